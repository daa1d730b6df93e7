{% test registry_sentinels(model) %}
  {#- Sentinel invariants from the registry, per canvas and context column: a column the canvas
      neither fills nor imputes (`impute`) always holds the sentinel; a column the canvas requires never does; no context
      column is ever NULL. Fails with one row per (canvas, column, problem). -#}
  {%- set registry = unirank.unirank_registry() -%}
  {%- set checks = [] -%}
  {%- for canvas in registry.canvases -%}
    {%- set imputed = canvas.impute | map(attribute='column') | list -%}
    {%- for column in registry.context_columns -%}
      {%- if column.name not in canvas.context_columns and column.name not in imputed -%}
        {%- do checks.append((canvas.name, column, 'must be the sentinel', column.name ~ ' <> ' ~ unirank.sentinel_literal(column))) -%}
      {%- elif column.name in canvas.get('required_context', []) -%}
        {%- do checks.append((canvas.name, column, 'must not be the sentinel', column.name ~ ' = ' ~ unirank.sentinel_literal(column))) -%}
      {%- endif -%}
      {%- do checks.append((canvas.name, column, 'must not be NULL', column.name ~ ' is null')) -%}
    {%- endfor -%}
  {%- endfor -%}
  {% for canvas_name, column, problem, violation in checks %}
  select
      '{{ canvas_name }}' as canvas,
      '{{ column.name }}' as context_column,
      '{{ problem }}' as problem,
      count(*) as violating_rows
  from {{ model }}
  where task_type = '{{ canvas_name }}' and ({{ violation }})
  having count(*) > 0
  {% if not loop.last %}union all{% endif %}
  {% endfor %}
{% endtest %}
