with

source as (
    select * from {{ demo_log('impressions') }}
),

renamed as (
    select
        cast(request_id as {{ dbt.type_string() }}) as request_id,
        cast(item_id as {{ dbt.type_string() }}) as item_id,
        cast(position as {{ dbt.type_string() }}) as position_raw,
        {#- Parsed as a number first: a cast to an integer would round 2.5 to 3. #}
        {{ try_cast('position', type_double()) }} as position_number
    from source
),

typed as (
    select
        request_id,
        item_id,
        position_raw,
        case
            when position_number = floor(position_number) then cast(position_number as {{ dbt.type_int() }})
        end as position
    from renamed
),

numbered as (
    select
        *,
        row_number() over (partition by request_id, item_id order by position) as copy_number
    from typed
),

final as (
    select
        request_id,
        item_id,
        position_raw,
        position,
        case
            when request_id is null then 'null request_id'
            when item_id is null then 'null item_id'
            when position is null or position < 1 then 'invalid position'
            {#- An item shown twice in one request is one candidate at its first position. #}
            when copy_number > 1 then 'item shown again in its request'
        end as quarantine_reason
    from numbered
)

select * from final
