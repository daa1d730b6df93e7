{% test unique_combination(model, columns) %}
  {#- No two rows share the same values of `columns` (a composite key). -#}
  {%- if columns | length == 0 -%}
    {{ exceptions.raise_compiler_error("unique_combination: give at least one column") }}
  {%- endif -%}
  select {{ columns | join(', ') }}, count(*) as n_rows
  from {{ model }}
  group by {{ columns | join(', ') }}
  having count(*) > 1
{% endtest %}
