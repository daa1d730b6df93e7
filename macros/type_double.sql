{% macro type_double() %}
  {#- An 8-byte float on every engine (dbt.type_float() is a 4-byte float on DuckDB). -#}
  {{ return(adapter.dispatch('type_double', 'unirank')()) }}
{% endmacro %}

{% macro default__type_double() %}double{% endmacro %}

{% macro bigquery__type_double() %}float64{% endmacro %}
