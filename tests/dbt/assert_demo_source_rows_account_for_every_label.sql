{#- The demo's row accounting holds: every request and impression int_demo__source_rows calls
    used (no quarantine reason) is in a canvas's label model, and every labelled (request, item)
    is a used impression. A label-prep filter that drops rows the accounting does not know about
    (or the reverse) is listed here, so no source row disappears without a reason. -#}
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

used as (
    select
        source_table,
        row_key
    from source_rows
    where quarantine_reason is null
        and source_table in ('requests', 'impressions')
),

expected as (
    select distinct 'requests' as source_table, request_id as row_key from labelled
    union all
    select 'impressions' as source_table, row_key from labelled
),

final as (
    select
        coalesce(used.source_table, expected.source_table) as source_table,
        coalesce(used.row_key, expected.row_key) as row_key,
        case
            when expected.row_key is null then 'used by the accounting, in no label model'
            else 'in a label model, quarantined or unknown to the accounting'
        end as problem
    from used
    full outer join expected
        on used.source_table = expected.source_table
        and used.row_key = expected.row_key
    where used.row_key is null
        or expected.row_key is null
)

select * from final
