{% macro project_source_rows() %}
  {#- The project's source rows for the quarantine accounting (registry inputs.source_rows:
      source_table, row_key, quarantine_reason), or an empty relation of that shape when the
      project declares none. -#}
  {%- set model = unirank.unirank_registry().inputs.source_rows -%}
  {%- if model is none -%}
    (
        select
            cast(null as {{ dbt.type_string() }}) as source_table,
            cast(null as {{ dbt.type_string() }}) as row_key,
            cast(null as {{ dbt.type_string() }}) as quarantine_reason
        where 1 = 0
    )
  {%- else -%}
    {{ ref(model) }}
  {%- endif -%}
{% endmacro %}
