{% macro unirank_literal(value, type) %}
  {#- `value` as a typed SQL literal of a registry type (string, int, float): a sentinel or a
      feature default. -#}
  {%- if type == 'string' -%}
    cast('{{ value | string | replace("'", "''") }}' as {{ dbt.type_string() }})
  {%- else -%}
    cast({{ value }} as {{ unirank.unirank_sql_type(type) }})
  {%- endif -%}
{% endmacro %}
