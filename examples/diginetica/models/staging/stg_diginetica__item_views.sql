with

source as (
    select * from {{ source('diginetica', 'item_views') }}
),

renamed as (
    select
        cast(session_id as {{ dbt.type_string() }}) as session_id,
        case when user_id = 'NA' then null else cast(user_id as {{ dbt.type_string() }}) end as user_id,
        cast(item_id as {{ dbt.type_string() }}) as item_id,
        {{ unirank.try_cast('timeframe', dbt.type_bigint()) }} as timeframe_ms,
        {{ unirank.try_cast('eventdate', 'date') }} as event_date
    from source
),

final as (
    select
        session_id,
        user_id,
        item_id,
        event_date,
        timeframe_ms,
        {#- the time of day is not logged: event date + the offset within the session (under 20
            minutes in the sample) keeps the order of a day's views -#}
        {{ unirank.timestamp_from_epoch_microseconds(unirank.epoch_microseconds('cast(event_date as ' ~ dbt.type_timestamp() ~ ')') ~ ' + timeframe_ms * 1000') }} as viewed_at,
        case
            when session_id is null then 'null session_id'
            when item_id is null then 'null item_id'
            when event_date is null or timeframe_ms is null then 'unparseable time'
        end as quarantine_reason
    from renamed
)

select * from final
