{% macro unirank_sql_type(type) %}
  {#- Registry type name (string, int, float) to this engine's SQL type. -#}
  {%- if type == 'string' -%}{{ dbt.type_string() }}
  {%- elif type == 'int' -%}{{ dbt.type_bigint() }}
  {%- elif type == 'float' -%}{{ unirank.type_double() }}
  {%- else -%}{{ exceptions.raise_compiler_error("unirank_sql_type: unknown type '" ~ type ~ "'; use string, int or float.") }}
  {%- endif -%}
{% endmacro %}
