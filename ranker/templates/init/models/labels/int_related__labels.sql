{#- The label model of the `related` canvas ("more like this" under an item): one row per
    (request, candidate item), as every label model (see int_home__labels), with the context
    columns it fills: source_item_id (the item on screen) and user_id (NULL when logged out:
    unirank puts the sentinel). -#}
with

impressions as (
    select * from {{ ref('stg_sample__impressions') }}
    where quarantine_reason is null
        and canvas = 'related'
),

final as (
    select
        request_id,
        item_id,
        source_item_id,
        user_id,
        max(case when is_clicked then 1 else 0 end) as label,
        min(requested_at) as requested_at
    from impressions
    where source_item_id is not null
    group by request_id, item_id, source_item_id, user_id
)

select * from final
