{#- Diginetica's part of the dataset contract for bad input: one row per raw row (item views,
    purchases, product categories) with its table, a row key and the quarantine reason. -#}
with

item_views as (
    select * from {{ ref('stg_diginetica__item_views') }}
),

purchases as (
    select * from {{ ref('stg_diginetica__purchases') }}
),

product_categories as (
    select * from {{ ref('stg_diginetica__product_categories') }}
),

final as (
    select
        'item_views' as source_table,
        {{ dbt.concat(["coalesce(session_id, '')", "'/'", "coalesce(item_id, '')"]) }} as row_key,
        quarantine_reason
    from item_views
    union all
    select
        'purchases' as source_table,
        {{ dbt.concat(["coalesce(session_id, '')", "'/'", "coalesce(item_id, '')"]) }} as row_key,
        quarantine_reason
    from purchases
    union all
    select
        'product_categories' as source_table,
        coalesce(item_id, '') as row_key,
        quarantine_reason
    from product_categories
)

select * from final
