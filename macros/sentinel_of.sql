{% macro sentinel_of(column_name) %}
  {#- The typed sentinel literal of the registry context column named `column_name`. Fails when
      the registry lacks it - at run time only: while dbt parses, a built-in model the registry
      does not use (and that is disabled for it) may still name a column the project lacks. -#}
  {%- for column in unirank.unirank_registry().context_columns -%}
    {%- if column.name == column_name -%}
      {{ return(unirank.sentinel_literal(column)) }}
    {%- endif -%}
  {%- endfor -%}
  {%- if execute -%}
    {{ exceptions.raise_compiler_error("sentinel_of: '" ~ column_name ~ "' is not a context column of the registry (vars.unirank.context_columns); the model that asks for it needs it declared.") }}
  {%- endif -%}
  {{ return("cast(null as " ~ dbt.type_string() ~ ")") }}
{% endmacro %}
