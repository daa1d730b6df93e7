{#- The item catalogue features join to: one row per item with title, category and availability. -#}
with

items as (
    select * from {{ ref('stg_demo__items') }}
    where quarantine_reason is null
),

final as (
    select
        item_id,
        lower(title) as title,
        category,
        coalesce(available_countries, '') as available_countries
    from items
)

select * from final
