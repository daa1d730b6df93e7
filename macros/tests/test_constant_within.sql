{% test constant_within(model, column_name, group_by) %}
  {#- `column_name` has a single value within each `group_by` group (e.g. one task_type and one
      split per request: a request is never split across canvases or splits). -#}
  select {{ group_by }}, count(distinct {{ column_name }}) as n_values
  from {{ model }}
  group by {{ group_by }}
  having count(distinct {{ column_name }}) > 1
{% endtest %}
