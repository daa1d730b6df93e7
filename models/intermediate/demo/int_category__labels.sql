{#- Category: browsing a category page. Requests without a category are not category examples. -#}
with

impressions_graded as (
    select * from {{ ref('int_demo__impressions_graded') }}
),

final as (
    select
        request_id,
        item_id,
        category,
        user_id,
        country,
        label,
        requested_at
    from impressions_graded
    where canvas = 'category'
        and category is not null
)

select * from final
