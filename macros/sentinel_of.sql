{% macro sentinel_of(column_name) %}
  {#- The typed sentinel literal of the registry context column named `column_name`. -#}
  {%- for column in unirank_registry().context_columns -%}
    {%- if column.name == column_name -%}
      {{ return(sentinel_literal(column)) }}
    {%- endif -%}
  {%- endfor -%}
  {{ exceptions.raise_compiler_error("sentinel_of: '" ~ column_name ~ "' is not a context column in vars.context_columns; the feature models need it declared.") }}
{% endmacro %}
