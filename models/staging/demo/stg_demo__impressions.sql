with

source as (
    select * from {{ demo_log('impressions') }}
),

renamed as (
    select
        cast(request_id as {{ dbt.type_string() }}) as request_id,
        cast(item_id as {{ dbt.type_string() }}) as item_id,
        {{ try_cast('position', dbt.type_int()) }} as position
    from source
),

final as (
    select
        *,
        case
            when request_id is null then 'null request_id'
            when item_id is null then 'null item_id'
            when position is null or position < 1 then 'invalid position'
        end as quarantine_reason
    from renamed
)

select * from final
