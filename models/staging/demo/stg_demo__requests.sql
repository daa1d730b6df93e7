{%- set canvases = unirank_registry().canvases -%}

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
        {#- A blank query is no query. -#}
        nullif(trim(cast(query_text as {{ dbt.type_string() }})), '') as query_text,
        cast(category as {{ dbt.type_string() }}) as category,
        cast(requested_at as {{ dbt.type_string() }}) as requested_at_raw,
        {{ try_cast('requested_at', dbt.type_timestamp()) }} as requested_at
    from source
),

numbered as (
    select
        *,
        row_number() over (
            partition by request_id
            order by requested_at_raw, canvas, user_id, source_item_id, query_text, category
        ) as copy_number
    from renamed
),

final as (
    select
        request_id,
        canvas,
        user_id,
        country,
        device,
        source_item_id,
        query_text,
        category,
        requested_at_raw,
        requested_at,
        case
            when request_id is null then 'null request_id'
            when copy_number > 1 then 'duplicate request_id'
            when canvas is null or canvas not in ('{{ canvases | map(attribute='name') | join("', '") }}') then 'unknown canvas'
            when requested_at is null then 'unparseable requested_at'
            {#- A request without the context its canvas requires (registry required_context)
                cannot be an example of that canvas. #}
            {%- for canvas in canvases %}
            {%- for column in canvas.required_context %}
            when canvas = '{{ canvas.name }}' and {{ column }} is null then '{{ canvas.name }} request without {{ column }}'
            {%- endfor %}
            {%- endfor %}
        end as quarantine_reason
    from numbered
)

select * from final
