with

source as (
    select * from {{ demo_log('engagements') }}
),

renamed as (
    select
        cast(request_id as {{ dbt.type_string() }}) as request_id,
        cast(item_id as {{ dbt.type_string() }}) as item_id,
        lower(trim(cast(event_type as {{ dbt.type_string() }}))) as event_type,
        cast(event_at as {{ dbt.type_string() }}) as event_at_raw,
        {{ try_cast('event_at', dbt.type_timestamp()) }} as event_at
    from source
),

final as (
    select
        *,
        case
            when request_id is null then 'null request_id'
            when item_id is null then 'null item_id'
            when event_type is null or event_type not in ('click', 'conversion') then 'unknown event_type'
            when event_at is null then 'unparseable event_at'
        end as quarantine_reason
    from renamed
)

select * from final
