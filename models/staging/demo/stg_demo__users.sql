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

numbered as (
    select
        *,
        row_number() over (partition by user_id order by country, device) as copy_number
    from renamed
),

final as (
    select
        user_id,
        country,
        device,
        case
            when user_id is null then 'null user_id'
            when copy_number > 1 then 'duplicate user_id'
        end as quarantine_reason
    from numbered
)

select * from final
