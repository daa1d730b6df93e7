{% macro spark__load_csv_rows(model, agate_table) %}
  {#- Seeds on Spark. dbt-spark inserts seeds as batches of literal VALUES (about 70 rows/s for
      the demo requests here, so the 240k demo impressions would take most of an hour), and
      with the session method its parameter binding loads an empty cell as the string 'None'.
      By default Spark reads the CSV file itself, as DuckDB's seed loader does: header row,
      unquoted empty cell = NULL, quoted "" = empty string, every value cast to the seed's
      column type. That needs the project folder readable by Spark (local mode, or a shared
      file system); `--vars '{spark_seed_loader: values}'` falls back to dbt-spark's loader (a
      cluster behind a Thrift server, whose driver binds NULL correctly). -#}
  {%- set loader = var('spark_seed_loader', 'csv_file') -%}
  {%- if loader == 'values' -%}
    {{ return(dbt.spark__load_csv_rows(model, agate_table)) }}
  {%- elif loader != 'csv_file' -%}
    {{ exceptions.raise_compiler_error("vars.spark_seed_loader is '" ~ loader ~ "'; use csv_file (Spark reads the seed file) or values (dbt-spark's INSERT ... VALUES).") }}
  {%- endif -%}
  {%- set column_override = model['config'].get('column_types', {}) -%}
  {%- set path = model.root_path ~ '/' ~ model.original_file_path -%}
  {%- set view = this.identifier ~ '__csv' -%}
  {%- set columns = [] -%}
  {%- for column_name in agate_table.column_names -%}
    {%- set type = column_override.get(column_name, adapter.convert_type(agate_table, loop.index0)) -%}
    {%- do columns.append('cast(`' ~ column_name ~ '` as ' ~ type ~ ') as `' ~ column_name ~ '`') -%}
  {%- endfor -%}
  {% call statement('seed_csv_view') -%}
    create or replace temporary view `{{ view }}`
    using csv
    options (
      path '{{ path | replace("\\", "\\\\") | replace("'", "\\'") }}',
      header 'true',
      delimiter '{{ model['config'].get('delimiter', ',') }}',
      quote '"',
      escape '"',
      multiLine 'true',
      inferSchema 'false'
    )
  {%- endcall %}
  {% set sql -%}
    insert into {{ this.render() }}
    select {{ columns | join(', ') }}
    from `{{ view }}`
  {%- endset %}
  {% do adapter.add_query(sql, abridge_sql_log=True) %}
  {% call statement('seed_csv_view_drop') -%}
    drop view if exists `{{ view }}`
  {%- endcall %}
  {{ return(sql) }}
{% endmacro %}
