{#- Search: results shown for a typed query. A request whose query is blank is not a search
    example. The query is normalised (trimmed, lower-cased). -#}
with

impressions_graded as (
    select * from {{ ref('int_demo__impressions_graded') }}
),

final as (
    select
        request_id,
        item_id,
        lower(trim(query_text)) as query_text,
        user_id,
        country,
        label,
        requested_at
    from impressions_graded
    where canvas = 'search'
        and trim(coalesce(query_text, '')) <> ''
)

select * from final
