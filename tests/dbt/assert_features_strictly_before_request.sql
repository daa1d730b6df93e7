{#- Leakage check: recompute the history features of a deterministic sample of probes (about 1 in
    20 requests) the slow, obvious way - a join on engaged_at < requested_at - and return every
    row where the mart disagrees. A feature that used an event at or after the request (or missed
    one before it) fails here. Runs when the registry has the built-in feature models it checks
    (int_features__item_popularity and int_features__user_history). -#}
{%- set models = unirank_registry().feature_models | map(attribute='model') | list -%}
{%- if 'int_features__item_popularity' not in models or 'int_features__user_history' not in models -%}
select 1 as skipped where 1 = 0
{%- else %}
with

ranking_examples as (
    select * from {{ ref('ranking_examples') }}
),

engagement_history as (
    select * from {{ ref('int_engagement_history') }}
),

probes_sampled as (
    select *
    from ranking_examples
    where {{ dbt.right(dbt.hash('request_id'), 1) }} = '0'
),

item_recomputed as (
    select
        probes_sampled.request_id,
        probes_sampled.item_id,
        count(engagement_history.item_id) as item_engagements,
        sum(
            case
                when engagement_history.engaged_at >= {{ dbt.dateadd('day', -7, 'probes_sampled.requested_at') }} then 1
                else 0
            end
        ) as item_engagements_7d,
        sum(
            case
                when engagement_history.task_type = probes_sampled.task_type then 1
                -- an engagement not attributed to a canvas counts for every canvas
                when engagement_history.item_id is not null and engagement_history.task_type is null then 1
                else 0
            end
        ) as item_canvas_engagements
    from probes_sampled
    left join engagement_history
        on probes_sampled.item_id = engagement_history.item_id
        and engagement_history.engaged_at < probes_sampled.requested_at
    group by probes_sampled.request_id, probes_sampled.item_id
),

user_recomputed as (
    select
        probes_sampled.request_id,
        probes_sampled.item_id,
        count(engagement_history.item_id) as user_engagements,
        sum(
            case
                when coalesce(engagement_history.item_category, '__none__') = probes_sampled.item_category then 1
                else 0
            end
        ) as user_category_engagements,
        sum(case when engagement_history.item_id = probes_sampled.item_id then 1 else 0 end) as user_item_engagements
    from probes_sampled
    left join engagement_history
        on probes_sampled.user_id = engagement_history.user_id
        and engagement_history.engaged_at < probes_sampled.requested_at
    group by probes_sampled.request_id, probes_sampled.item_id
),

compared as (
    select
        probes_sampled.request_id,
        probes_sampled.item_id,
        probes_sampled.item_engagements,
        item_recomputed.item_engagements as item_engagements_expected,
        probes_sampled.item_engagements_7d,
        coalesce(item_recomputed.item_engagements_7d, 0) as item_engagements_7d_expected,
        probes_sampled.item_canvas_engagements,
        coalesce(item_recomputed.item_canvas_engagements, 0) as item_canvas_engagements_expected,
        probes_sampled.user_engagements,
        user_recomputed.user_engagements as user_engagements_expected,
        probes_sampled.user_category_engagements,
        coalesce(user_recomputed.user_category_engagements, 0) as user_category_engagements_expected,
        probes_sampled.user_item_engagements,
        coalesce(user_recomputed.user_item_engagements, 0) as user_item_engagements_expected
    from probes_sampled
    inner join item_recomputed
        on probes_sampled.request_id = item_recomputed.request_id
        and probes_sampled.item_id = item_recomputed.item_id
    inner join user_recomputed
        on probes_sampled.request_id = user_recomputed.request_id
        and probes_sampled.item_id = user_recomputed.item_id
)

select *
from compared
where item_engagements <> item_engagements_expected
    or item_engagements_7d <> item_engagements_7d_expected
    or item_canvas_engagements <> item_canvas_engagements_expected
    or user_engagements <> user_engagements_expected
    or user_category_engagements <> user_category_engagements_expected
    or user_item_engagements <> user_item_engagements_expected
{%- endif %}
