{#- Optional (registry inputs.source_rows): one row per raw source row, with its table, a key and
    its quarantine reason (NULL when the row is used). unirank's quarantined_rows and
    quarantine_summary read it. -#}
with

impressions as (
    select * from {{ ref('stg_sample__impressions') }}
),

final as (
    select
        'impressions' as source_table,
        coalesce(request_id, '') || '/' || coalesce(item_id, '') as row_key,
        quarantine_reason
    from impressions
)

select * from final
