{#- Built-in feature model. Item popularity as of each probe: engagements with the item strictly before the request, over
    all canvases, over the last 7 days, and within the probe's own canvas (an engagement the log
    does not attribute to a canvas, task_type NULL, counts for every canvas). -#}
{{ config(enabled=unirank_uses('int_features__item_popularity')) }}
with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
),

engagement_history as (
    select * from {{ ref('int_engagement_history') }}
),

events_and_probes as (
    {#- Each engagement enters twice: as itself, and 7 days later as its expiry (-1 to the
        7-day count), so every count is one running sum over time (strictly_before) instead of
        a sliding RANGE frame. An engagement at t - 7 days still counts for a probe at t: its
        expiry at t sorts after the probe. -#}
    select
        cast(null as {{ dbt.type_string() }}) as request_id,
        item_id,
        task_type,
        {{ epoch_microseconds('engaged_at') }} as at_us,
        1 as is_event,
        1 as week_delta,
        case when task_type is null then 1 else 0 end as is_unattributed_event,
        1 as after_probes
    from engagement_history
    union all
    select
        cast(null as {{ dbt.type_string() }}) as request_id,
        item_id,
        task_type,
        {{ epoch_microseconds('engaged_at') }} + {{ 7 * 86400 * 1000000 }} as at_us,
        0 as is_event,
        -1 as week_delta,
        0 as is_unattributed_event,
        1 as after_probes
    from engagement_history
    union all
    select
        request_id,
        item_id,
        task_type,
        requested_at_us as at_us,
        0 as is_event,
        0 as week_delta,
        0 as is_unattributed_event,
        0 as after_probes
    from feature_probes
),

engagements_counted as (
    select
        request_id,
        item_id,
        after_probes,
        sum(is_event) {{ strictly_before(['item_id'], events_after='after_probes') }} as item_engagements,
        sum(week_delta) {{ strictly_before(['item_id'], events_after='after_probes') }} as item_engagements_7d,
        sum(is_event) {{ strictly_before(['item_id', 'task_type'], events_after='after_probes') }} as item_attributed_engagements,
        sum(is_unattributed_event) {{ strictly_before(['item_id'], events_after='after_probes') }} as item_unattributed_engagements
    from events_and_probes
),

final as (
    select
        request_id,
        item_id,
        coalesce(item_engagements, 0) as item_engagements,
        coalesce(item_engagements_7d, 0) as item_engagements_7d,
        coalesce(item_attributed_engagements, 0)
            + coalesce(item_unattributed_engagements, 0) as item_canvas_engagements
    from engagements_counted
    where after_probes = 0
)

select * from final
