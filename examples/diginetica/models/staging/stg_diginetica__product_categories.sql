with

source as (
    select * from {{ source('diginetica', 'product_categories') }}
),

renamed as (
    select
        cast(itemId as {{ dbt.type_string() }}) as item_id,
        cast(categoryId as {{ dbt.type_string() }}) as category
    from source
),

final as (
    select
        *,
        case
            when item_id is null then 'null item_id'
            when category is null then 'null category'
        end as quarantine_reason
    from renamed
)

select * from final
