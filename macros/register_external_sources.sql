{% macro register_external_sources() %}
  {#- Make the file-backed sources this invocation reads queryable by name (run as an
      on-run-start hook). dbt-duckdb reads a source's `external_location` itself, so the default
      does nothing; Spark gets an external table per source over the files at the source's
      `meta.location` (`{name}` = the table name) in `meta.format`, like dbt-external-tables'
      stage_external_sources. Returns no SQL: the work is done with run_query. -#}
  {{ return(adapter.dispatch('register_external_sources', 'unirank')()) }}
{% endmacro %}

{% macro default__register_external_sources() %}
  {{ return('') }}
{% endmacro %}

{% macro spark__register_external_sources() %}
  {%- if not execute -%}
    {{ return('') }}
  {%- endif -%}
  {%- set used = [] -%}
  {%- for node in graph.nodes.values() -%}
    {%- for dependency in node.depends_on.nodes if dependency.startswith('source.') -%}
      {%- do used.append(dependency) -%}
    {%- endfor -%}
  {%- endfor -%}
  {%- for source in graph.sources.values() if source.unique_id in used -%}
    {%- set location = source.meta.get('location') -%}
    {%- if location is none -%}
      {{ exceptions.raise_compiler_error("source " ~ source.source_name ~ "." ~ source.name ~ " has no meta.location; Spark needs the folder of its files (see models/staging/demo/_demo__sources.yml).") }}
    {%- endif -%}
    {%- set location = location | replace('{name}', source.name) -%}
    {%- set relation = api.Relation.create(schema=source.schema, identifier=source.identifier) -%}
    {% do log("registering " ~ relation ~ " over " ~ location, info=false) %}
    {% do run_query("create schema if not exists " ~ source.schema) %}
    {% do run_query("drop table if exists " ~ relation) %}
    {% do run_query("create table " ~ relation ~ " using " ~ source.meta.get('format', 'parquet') ~ " location '" ~ location | replace("'", "\\'") ~ "'") %}
  {%- endfor -%}
  {{ return('') }}
{% endmacro %}
