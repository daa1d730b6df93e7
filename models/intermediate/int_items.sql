{#- The selected dataset's item catalogue (int_<dataset>__items): one row per item with title,
    category and available countries. Features and serving read items only through this model. -#}
with

dataset_items as (
    select * from {{ dataset_ref('items') }}
),

final as (
    select
        item_id,
        title,
        category,
        available_countries
    from dataset_items
)

select * from final
