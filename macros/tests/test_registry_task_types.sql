{% test registry_task_types(model, column_name) %}
  {#- Every value of `column_name` is a canvas declared in the registry. -#}
  {%- set names = unirank.unirank_registry().canvases | map(attribute='name') | list -%}
  select {{ column_name }} as unknown_task_type, count(*) as n_rows
  from {{ model }}
  where {{ column_name }} is null or {{ column_name }} not in ('{{ names | join("', '") }}')
  group by {{ column_name }}
{% endtest %}
