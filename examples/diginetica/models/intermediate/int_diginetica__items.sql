{#- The Diginetica catalogue in the dataset contract: one row per item with its category. The
    sample has no product names and no countries: title and available_countries are ''. -#}
with

product_categories as (
    select * from {{ ref('stg_diginetica__product_categories') }}
    where quarantine_reason is null
),

final as (
    select
        item_id,
        '' as title,
        category,
        '' as available_countries
    from product_categories
)

select * from final
