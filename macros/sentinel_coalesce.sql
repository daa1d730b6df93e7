{% macro sentinel_coalesce(expression, column) %}
  {#- `expression` cast to the context column's type, with NULL (and, for strings, blank) replaced
      by the column's sentinel from the registry. `column` is a registry entry (name, type, sentinel). -#}
  {%- if column.sentinel is not defined -%}
    {{ exceptions.raise_compiler_error("sentinel_coalesce: column " ~ column ~ " has no sentinel; declare it in vars.context_columns.") }}
  {%- endif -%}
  {%- set type = column.get('type', 'string') -%}
  {%- if type == 'string' -%}
    coalesce(nullif(trim(cast({{ expression }} as {{ dbt.type_string() }})), ''), {{ unirank.sentinel_literal(column) }})
  {%- else -%}
    coalesce(cast({{ expression }} as {{ unirank.unirank_sql_type(type) }}), {{ unirank.sentinel_literal(column) }})
  {%- endif -%}
{% endmacro %}
