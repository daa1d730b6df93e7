{% macro sentinel_literal(column) %}
  {#- The registry sentinel of a context column as a typed SQL literal. -#}
  {{- unirank.unirank_literal(column.sentinel, column.get('type', 'string')) -}}
{% endmacro %}
