with

source as (
    select * from {{ source('movielens', 'tags') }}
),

renamed as (
    select
        cast(userId as {{ dbt.type_string() }}) as user_id,
        cast(movieId as {{ dbt.type_string() }}) as item_id,
        cast(tag as {{ dbt.type_string() }}) as tag,
        {{ unirank.try_cast('timestamp', dbt.type_bigint()) }} as tagged_at_epoch
    from source
),

final as (
    select
        user_id,
        item_id,
        tag,
        {{ unirank.timestamp_from_epoch_microseconds('tagged_at_epoch * 1000000') }} as tagged_at,
        case
            when user_id is null then 'null user_id'
            when item_id is null then 'null item_id'
            when trim(coalesce(tag, '')) = '' then 'blank tag'
            when tagged_at_epoch is null then 'unparseable timestamp'
        end as quarantine_reason
    from renamed
)

select * from final
