{% macro unirank_build_started() %}
  {#- on-run-start hook: a command that writes the warehouse (build, run, seed, snapshot) first
      records that a build is under way (table unirank_build_state, state 'running'); the
      on-run-end hook records how it ended. A run killed in between leaves 'running', and
      `unirank-cli train` / `score` refuse such a warehouse: it may mix two runs. Plain `dbt build`
      gets this too; `unirank-cli build` also builds aside and publishes only a build that passed
      (ranker/warehouse_publish.py). DuckDB only (the warehouse file is what unirank reads). -#}
  {{ return(unirank._unirank_record_build_state('running', 0)) }}
{% endmacro %}

{% macro unirank_build_finished(results) %}
  {#- on-run-end hook: 'complete' when every node of the run passed, else 'failed' with how
      many did not. -#}
  {%- set failed = [] -%}
  {%- for result in results if result.status in ('error', 'fail', 'runtime error', 'skipped') -%}
    {%- do failed.append(result.node.unique_id) -%}
  {%- endfor -%}
  {{ return(unirank._unirank_record_build_state('failed' if failed else 'complete', failed | length)) }}
{% endmacro %}

{% macro _unirank_record_build_state(state, failed_nodes) %}
  {%- if not execute or target.type != 'duckdb' or flags.WHICH not in ('build', 'run', 'seed', 'snapshot') -%}
    {{ return('') }}
  {%- endif -%}
  {%- set relation = api.Relation.create(database=target.database, schema=target.schema, identifier='unirank_build_state') -%}
  {% do run_query("create schema if not exists " ~ relation.without_identifier()) %}
  {% do run_query(
      "create or replace table " ~ relation ~ " as select"
      ~ " '" ~ state ~ "' as state,"
      ~ " '" ~ flags.WHICH ~ "' as command,"
      ~ " '" ~ invocation_id ~ "' as invocation_id,"
      ~ " " ~ failed_nodes ~ " as failed_nodes,"
      ~ " cast(current_timestamp as timestamp) as recorded_at"
  ) %}
  {{ return('') }}
{% endmacro %}
