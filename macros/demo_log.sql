{% macro demo_log(table) %}
  {#- The raw demo log `table`: the committed seed (demo_source: seed) or the generated Parquet
      set read as a dbt source (demo_source: parquet). Used only by staging models. -#}
  {%- set tables = ['users', 'items', 'requests', 'impressions', 'engagements'] -%}
  {%- if table not in tables -%}
    {{ exceptions.raise_compiler_error("demo_log: unknown table '" ~ table ~ "'; use one of " ~ tables ~ ".") }}
  {%- endif -%}
  {%- set mode = var('demo_source', 'seed') -%}
  {%- if mode == 'seed' -%}
    {{ return(ref('demo_' ~ table)) }}
  {%- elif mode == 'parquet' -%}
    {{ return(source('demo', table)) }}
  {%- else -%}
    {{ exceptions.raise_compiler_error("vars.demo_source is '" ~ mode ~ "'; use 'seed' (committed demo CSVs) or 'parquet' (a set from `unirank-cli generate`, at vars.demo_path).") }}
  {%- endif -%}
{% endmacro %}
