{#- Built-in feature model: the candidate's own category (`item_category`) and its popularity
    rank within that category as of each probe (`item_category_rank_pct`): items ranked by their
    engagements before the start of the probe's period (registry category_rank_grain: day, week
    or month), so the rank never sees the request's own period. A percentile in (0, 1]: the
    share of the category's items ranked at or above this one (small = popular). -#}
{{ config(enabled=unirank_uses('int_features__item_category')) }}
{%- set grain = unirank_registry().category_rank_grain -%}

with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
),

engagement_history as (
    select * from {{ ref('int_engagement_history') }}
),

items as (
    select * from {{ ref('int_items') }}
),

periods as (
    select distinct {{ dbt.date_trunc(grain, 'requested_at') }} as period_start from feature_probes
    union
    select distinct {{ dbt.date_trunc(grain, 'engaged_at') }} as period_start from engagement_history
),

-- The items a category's rank is taken over: those with a training or serving probe or an
-- engagement. Not the whole catalogue (the `latest` probes, one per catalogue item for online
-- scoring): items nobody ever saw would tie at the bottom and squeeze every percentile.
ranked_items as (
    select item_id from feature_probes where probe_kind <> 'latest'
    union
    select item_id from engagement_history
),

item_periods as (
    select
        items.item_id,
        items.category,
        periods.period_start
    from ranked_items
    inner join items
        on ranked_items.item_id = items.item_id
    cross join periods
),

engagements_per_period as (
    select
        item_id,
        {{ dbt.date_trunc(grain, 'engaged_at') }} as period_start,
        count(*) as engagements
    from engagement_history
    group by item_id, {{ dbt.date_trunc(grain, 'engaged_at') }}
),

engagements_before_period as (
    select
        item_periods.item_id,
        item_periods.category,
        item_periods.period_start,
        coalesce(sum(engagements_per_period.engagements) over (
            partition by item_periods.item_id
            order by item_periods.period_start nulls first
            rows between unbounded preceding and 1 preceding
        ), 0) as engagements_before
    from item_periods
    left join engagements_per_period
        on item_periods.item_id = engagements_per_period.item_id
        and item_periods.period_start = engagements_per_period.period_start
),

category_ranked as (
    select
        item_id,
        period_start,
        cast(rank() over (
            partition by category, period_start
            order by engagements_before desc
        ) as {{ type_double() }})
        / count(*) over (partition by category, period_start) as item_category_rank_pct
    from engagements_before_period
),

final as (
    select
        feature_probes.request_id,
        feature_probes.item_id,
        items.category as item_category,
        -- an item nobody has seen (only the catalogue has it) ranks last: 1.0
        coalesce(category_ranked.item_category_rank_pct, 1.0) as item_category_rank_pct
    from feature_probes
    inner join items
        on feature_probes.item_id = items.item_id
    left join category_ranked
        on feature_probes.item_id = category_ranked.item_id
        and {{ dbt.date_trunc(grain, 'feature_probes.requested_at') }} = category_ranked.period_start
)

select * from final
