with

source as (
    select * from {{ demo_log('items') }}
),

renamed as (
    select
        cast(item_id as {{ dbt.type_string() }}) as item_id,
        cast(title as {{ dbt.type_string() }}) as title,
        cast(category as {{ dbt.type_string() }}) as category,
        cast(available_countries as {{ dbt.type_string() }}) as available_countries
    from source
),

numbered as (
    select
        *,
        row_number() over (
            partition by item_id order by category, title, available_countries
        ) as copy_number
    from renamed
),

final as (
    select
        item_id,
        title,
        category,
        available_countries,
        case
            when item_id is null then 'null item_id'
            when copy_number > 1 then 'duplicate item_id'
            when category is null then 'null category'
        end as quarantine_reason
    from numbered
)

select * from final
