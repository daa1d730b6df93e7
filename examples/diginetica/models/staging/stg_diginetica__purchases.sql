with

source as (
    select * from {{ source('diginetica', 'purchases') }}
),

renamed as (
    select
        cast(sessionId as {{ dbt.type_string() }}) as session_id,
        case when userId = 'NA' then null else cast(userId as {{ dbt.type_string() }}) end as user_id,
        cast(itemId as {{ dbt.type_string() }}) as item_id,
        cast(ordernumber as {{ dbt.type_string() }}) as order_number,
        {{ unirank.try_cast('timeframe', dbt.type_bigint()) }} as timeframe_ms,
        {{ unirank.try_cast('eventdate', 'date') }} as event_date
    from source
),

final as (
    select
        session_id,
        user_id,
        item_id,
        order_number,
        event_date,
        timeframe_ms,
        {#- the purchase log's timeframe counts from a session start that can be months earlier,
            so the time of day is unknown: a purchase is placed at the end of its day (after that
            day's views, never before a request of that day) -#}
        {{ unirank.timestamp_from_epoch_microseconds(unirank.epoch_microseconds('cast(event_date as ' ~ dbt.type_timestamp() ~ ')') ~ ' + 86399999000') }} as purchased_at,
        case
            when session_id is null then 'null session_id'
            when item_id is null then 'null item_id'
            when event_date is null or timeframe_ms is null then 'unparseable time'
        end as quarantine_reason
    from renamed
)

select * from final
