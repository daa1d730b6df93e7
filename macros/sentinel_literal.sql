{% macro sentinel_literal(column) %}
  {#- The registry sentinel of a context column as a typed SQL literal. -#}
  {%- set type = column.get('type', 'string') -%}
  {%- if type == 'string' -%}
    cast('{{ column.sentinel | replace("'", "''") }}' as {{ dbt.type_string() }})
  {%- else -%}
    cast({{ column.sentinel }} as {{ unirank_sql_type(type) }})
  {%- endif -%}
{% endmacro %}
