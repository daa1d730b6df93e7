with

source as (
    select * from {{ demo_log('users') }}
),

renamed as (
    select
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(country as {{ dbt.type_string() }}) as country,
        cast(device as {{ dbt.type_string() }}) as device
    from source
),

final as (
    select
        *,
        case
            when user_id is null then 'null user_id'
        end as quarantine_reason
    from renamed
)

select * from final
