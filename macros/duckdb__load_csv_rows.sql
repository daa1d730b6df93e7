{% macro duckdb__load_csv_rows(model, agate_table) %}
  {#- Seeds on DuckDB, in the CSV dialect a seed is written in (RFC 4180): quote '"', a quote
      inside a quoted value doubled (`"12"" pizza"`). dbt-duckdb's fast loader lets DuckDB sniff
      the dialect from the top of the file, so a quoted value further down was read with its
      quotes or failed the load. `+fast: false` keeps dbt-duckdb's row-by-row loader. -#}
  {%- if not config.get('fast', true) -%}
    {{ return(dbt.duckdb__load_csv_rows(model, agate_table)) }}
  {%- endif -%}
  {%- set delimiter = config.get('delimiter', ',') -%}
  {% set sql %}
    copy {{ this.render() }} from '{{ adapter.get_seed_file_path(model) | replace("'", "''") }}'
    (format csv, header true, delimiter '{{ delimiter }}', quote '"', escape '"')
  {% endset %}
  {% do adapter.add_query(sql, abridge_sql_log=True) %}
  {{ return(sql) }}
{% endmacro %}
