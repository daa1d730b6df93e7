{#- Related: "more like this" under a source item. Whether the source item may be its own
    candidate is the registry's `exclude_source_item` (default true), applied by unirank's union
    exactly as in serving. -#}
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
)

select * from final
