{% test between(model, column_name, min_value=none, max_value=none) %}
  {#- Every value of `column_name` lies in [min_value, max_value] (either bound optional). -#}
  {%- if min_value is none and max_value is none -%}
    {{ exceptions.raise_compiler_error("between: give min_value, max_value or both") }}
  {%- endif -%}
  select {{ column_name }} as out_of_range_value
  from {{ model }}
  where {{ column_name }} is null
  {% if min_value is not none %} or {{ column_name }} < {{ min_value }}{% endif %}
  {% if max_value is not none %} or {{ column_name }} > {{ max_value }}{% endif %}
{% endtest %}
