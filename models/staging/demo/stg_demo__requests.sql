{%- set canvas_names = unirank_registry().canvases | map(attribute='name') | list -%}

with

source as (
    select * from {{ demo_log('requests') }}
),

renamed as (
    select
        cast(request_id as {{ dbt.type_string() }}) as request_id,
        lower(trim(cast(canvas as {{ dbt.type_string() }}))) as canvas,
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(country as {{ dbt.type_string() }}) as country,
        cast(device as {{ dbt.type_string() }}) as device,
        cast(source_item_id as {{ dbt.type_string() }}) as source_item_id,
        cast(query_text as {{ dbt.type_string() }}) as query_text,
        cast(category as {{ dbt.type_string() }}) as category,
        cast(requested_at as {{ dbt.type_string() }}) as requested_at_raw,
        {{ try_cast('requested_at', dbt.type_timestamp()) }} as requested_at
    from source
),

final as (
    select
        *,
        case
            when request_id is null then 'null request_id'
            when canvas is null or canvas not in ('{{ canvas_names | join("', '") }}') then 'unknown canvas'
            when requested_at is null then 'unparseable requested_at'
        end as quarantine_reason
    from renamed
)

select * from final
