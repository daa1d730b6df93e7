with

source as (
    select * from {{ source('movielens', 'ratings') }}
),

renamed as (
    select
        cast(userId as {{ dbt.type_string() }}) as user_id,
        cast(movieId as {{ dbt.type_string() }}) as item_id,
        {{ unirank.try_cast('rating', unirank.type_double()) }} as rating,
        {{ unirank.try_cast('timestamp', dbt.type_bigint()) }} as rated_at_epoch
    from source
),

final as (
    select
        user_id,
        item_id,
        rating,
        {{ unirank.timestamp_from_epoch_microseconds('rated_at_epoch * 1000000') }} as rated_at,
        case
            when user_id is null then 'null user_id'
            when item_id is null then 'null item_id'
            when rating is null or rating < 0.5 or rating > 5 then 'rating outside 0.5-5'
            when rated_at_epoch is null then 'unparseable timestamp'
        end as quarantine_reason
    from renamed
)

select * from final
