{#- Where Diginetica negatives are drawn from: one row per (pool, item) for every item engaged at
    least once in the log (most of the 184k catalogue items never are), with sampling weight =
    engaged visits + 1 (popularity-weighted). Pool `__all__` holds them all (home, related);
    pool <category> the items of that category (category pages). -#}
with

visit_items as (
    select * from {{ ref('int_diginetica__visit_items') }}
),

item_weights as (
    select
        item_id,
        item_category,
        count(*) + 1 as weight
    from visit_items
    group by item_id, item_category
),

final as (
    select
        '__all__' as pool_key,
        item_id,
        weight
    from item_weights
    union all
    select
        item_category as pool_key,
        item_id,
        weight
    from item_weights
)

select * from final
