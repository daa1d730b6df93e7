{#- Related: "more like this" under a source item. The source item itself is never a candidate
    (recommending the item the user is looking at is not a related item). -#}
with

impressions_graded as (
    select * from {{ ref('int_demo__impressions_graded') }}
),

final as (
    select
        request_id,
        item_id,
        source_item_id,
        user_id,
        country,
        label,
        requested_at
    from impressions_graded
    where canvas = 'related'
        and source_item_id is not null
        and item_id <> source_item_id
)

select * from final
