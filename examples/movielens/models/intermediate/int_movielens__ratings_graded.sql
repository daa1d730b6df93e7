{#- One row per valid (user, movie) rating with its label grade: 2 = 4.5 or 5 stars, 1 = 4 stars
    (a positive: "highly rated"), 0 = below 4. A repeated rating keeps the latest. -#}
with

ratings as (
    select * from {{ ref('stg_movielens__ratings') }}
    where quarantine_reason is null
),

items as (
    select * from {{ ref('int_movielens__items') }}
),

ratings_deduplicated as (
    select
        user_id,
        item_id,
        rating,
        rated_at,
        row_number() over (partition by user_id, item_id order by rated_at desc) as recency
    from ratings
),

final as (
    select
        ratings_deduplicated.user_id,
        ratings_deduplicated.item_id,
        items.category as item_category,
        ratings_deduplicated.rating,
        case
            when ratings_deduplicated.rating >= 4.5 then 2
            when ratings_deduplicated.rating >= 4 then 1
            else 0
        end as grade,
        ratings_deduplicated.rated_at
    from ratings_deduplicated
    inner join items
        on ratings_deduplicated.item_id = items.item_id
    where ratings_deduplicated.recency = 1
)

select * from final
