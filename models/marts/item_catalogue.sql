{#- One row per item with what lookups need: title (for matching an unseen query), category,
    availability by country, and engagements over the serving lookback (popularity). -#}
with

items as (
    select * from {{ ref('int_items') }}
),

engagement_history as (
    select * from {{ ref('int_engagement_history') }}
),

serving_clock as (
    select * from {{ ref('int_serving_clock') }}
),

recent_engagements as (
    select
        engagement_history.item_id,
        count(*) as engagements
    from engagement_history
    cross join serving_clock
    where engagement_history.engaged_at >= serving_clock.lookback_from
        and engagement_history.engaged_at < serving_clock.as_of
    group by engagement_history.item_id
),

final as (
    select
        items.item_id,
        items.title,
        items.category,
        items.available_countries,
        cast(coalesce(recent_engagements.engagements, 0) as {{ dbt.type_bigint() }}) as recent_engagements
    from items
    left join recent_engagements
        on items.item_id = recent_engagements.item_id
)

select * from final
