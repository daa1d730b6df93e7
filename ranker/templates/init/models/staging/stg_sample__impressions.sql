{#- Staging: one row per raw impression, renamed and cast; nothing dropped. A row that cannot
    be used gets a `quarantine_reason` (unirank lists it in `quarantined_rows`, and the build
    fails when more than quarantine_max_share of a source is quarantined). With your own data,
    read a dbt source here: select * from {{ source('shop', 'impressions') }}. -#}
with

source as (
    select * from {{ ref('sample_impressions') }}
),

renamed as (
    select
        cast(request_id as varchar) as request_id,
        lower(trim(cast(canvas as varchar))) as canvas,
        nullif(trim(cast(user_id as varchar)), '') as user_id,
        nullif(trim(cast(source_item_id as varchar)), '') as source_item_id,
        cast(item_id as varchar) as item_id,
        -- a number first: a cast to an integer would round 2.5 to 3
        try_cast(position as double) as position_number,
        try_cast(clicked as integer) = 1 as is_clicked,
        try_cast(requested_at as timestamp) as requested_at
    from source
),

typed as (
    select
        * exclude (position_number),
        case when position_number = floor(position_number) then cast(position_number as integer) end as position
    from renamed
),

final as (
    select
        *,
        case
            when request_id is null then 'null request_id'
            when item_id is null then 'null item_id'
            when canvas not in ('home', 'related') then 'unknown canvas'
            when requested_at is null then 'unparseable requested_at'
            when position is null or position < 1 then 'invalid position'
            -- what a canvas's label model cannot use is counted here, not dropped there
            when canvas = 'home' and user_id is null then 'home request without user_id'
            when canvas = 'related' and source_item_id is null then 'related request without source_item_id'
        end as quarantine_reason
    from typed
)

select * from final
