{#- What `unirank-cli serve --sample-rate R` served: one row per item of each sampled answer
    (the JSON lines in `UNIRANK_SERVED_DIR`, `served/` beside the warehouse), so what was served
    can be monitored per canvas and path and joined to later engagement on item_id and the
    context. Empty (with the same columns) until the service has written any; DuckDB only. -#}
{%- set folder = env_var('UNIRANK_SERVED_DIR', 'warehouse/served') -%}
{%- set pattern = (folder ~ '/answers-*.jsonl') | replace("'", "''") -%}
{%- set files = [] -%}
{%- if execute and target.type == 'duckdb' -%}
  {%- set listed = run_query("select count(*) from glob('" ~ pattern ~ "')") -%}
  {%- do files.append(listed.columns[0].values()[0]) -%}
{%- endif -%}

with

{% if files and files[0] > 0 -%}
answers as (
    select * from read_json(
        '{{ pattern }}',
        format = 'newline_delimited',
        columns = {
            answer_id: 'varchar', served_at: 'varchar', canvas: 'varchar', context: 'json',
            context_key: 'varchar', k: 'integer', country: 'varchar', answered_by: 'varchar',
            model_version: 'varchar', cache_generation: 'varchar',
            items: 'struct(rank integer, item_id varchar, source varchar)[]'
        }
    )
),

items as (
    select
        answer_id,
        cast(left(served_at, 26) as timestamp) as served_at,
        canvas as task_type,
        context_key,
        cast(context as varchar) as context,
        country,
        answered_by,
        model_version,
        cache_generation,
        unnest(items, recursive := true)
    from answers
),

final as (
    select
        answer_id,
        served_at,
        task_type,
        context_key,
        context,
        country,
        answered_by,
        model_version,
        cache_generation,
        rank,
        item_id,
        source
    from items
)
{%- else -%}
final as (
    select
        cast(null as {{ dbt.type_string() }}) as answer_id,
        cast(null as {{ dbt.type_timestamp() }}) as served_at,
        cast(null as {{ dbt.type_string() }}) as task_type,
        cast(null as {{ dbt.type_string() }}) as context_key,
        cast(null as {{ dbt.type_string() }}) as context,
        cast(null as {{ dbt.type_string() }}) as country,
        cast(null as {{ dbt.type_string() }}) as answered_by,
        cast(null as {{ dbt.type_string() }}) as model_version,
        cast(null as {{ dbt.type_string() }}) as cache_generation,
        cast(null as {{ dbt.type_int() }}) as rank,
        cast(null as {{ dbt.type_string() }}) as item_id,
        cast(null as {{ dbt.type_string() }}) as source
    where 1 = 0
)
{%- endif %}

select * from final
