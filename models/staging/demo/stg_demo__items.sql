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
