{#- Where MovieLens negatives are drawn from (logs without impressions): one row per (pool, movie)
    with its sampling weight = number of ratings + 1 over the whole log (popularity-weighted, so a
    negative is about as popular as what users watch, and popularity alone cannot rank). Pool
    `__all__` holds every movie (home, related, search); pool <category> the movies of that
    category (a category page shows only its category). -#}
with

items as (
    select * from {{ ref('int_movielens__items') }}
),

ratings_graded as (
    select * from {{ ref('int_movielens__ratings_graded') }}
),

item_weights as (
    select
        items.item_id,
        items.category,
        count(ratings_graded.item_id) + 1 as weight
    from items
    left join ratings_graded
        on items.item_id = ratings_graded.item_id
    group by items.item_id, items.category
),

final as (
    select
        '__all__' as pool_key,
        item_id,
        weight
    from item_weights
    union all
    select
        category as pool_key,
        item_id,
        weight
    from item_weights
)

select * from final
