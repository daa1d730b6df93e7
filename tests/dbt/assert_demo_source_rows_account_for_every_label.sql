{#- The demo's row accounting holds: every request and impression int_demo__source_rows calls
    used (no quarantine reason) is in a canvas's label model. A label-prep filter that drops rows
    the accounting does not give a reason for is listed here, so no source row disappears
    without one. (Not the reverse: a canvas may derive its requests from others', as the
    fifth-canvas example in tests/test_dbt_pipeline.py does.) -#}
{{ config(enabled=project_name == 'unirank') }}

with

source_rows as (
    select * from {{ ref('int_demo__source_rows') }}
),

labelled as (
    {%- for canvas in unirank_registry().canvases %}
    select
        {{ dbt.concat(["request_id", "'/'", "item_id"]) }} as row_key,
        request_id
    from {{ ref(canvas.label_model) }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

labelled_keys as (
    select distinct 'requests' as source_table, request_id as row_key from labelled
    union all
    select distinct 'impressions' as source_table, row_key from labelled
),

used as (
    select
        source_table,
        row_key
    from source_rows
    where quarantine_reason is null
        and source_table in ('requests', 'impressions')
),

final as (
    select
        used.source_table,
        used.row_key,
        'used by the accounting, in no label model' as problem
    from used
    left join labelled_keys
        on used.source_table = labelled_keys.source_table
        and used.row_key = labelled_keys.row_key
    where labelled_keys.row_key is null
)

select * from final
