{#- One row per valid (request, shown item) of the demo logs with the graded label shared by the
    demo canvases: 2 = converted, 1 = clicked, 0 = shown and not engaged. An engagement counts only
    if it happened at or after the request and within 24 hours of it (later events are attributed
    to nothing). Staging quarantined an item shown again in its request; `int_demo__source_rows`
    accounts for every raw row this model does not use. -#}
with

requests as (
    select * from {{ ref('stg_demo__requests') }}
    where quarantine_reason is null
),

impressions as (
    select * from {{ ref('stg_demo__impressions') }}
    where quarantine_reason is null
),

engagements as (
    select * from {{ ref('stg_demo__engagements') }}
    where quarantine_reason is null
),

engagements_attributed as (
    select
        engagements.request_id,
        engagements.item_id,
        max(case when engagements.event_type = 'conversion' then 2 else 1 end) as grade,
        min(engagements.event_at) as engaged_at
    from engagements
    inner join requests
        on engagements.request_id = requests.request_id
    where {{ demo_attributed('engagements.event_at', 'requests.requested_at') }}
    group by engagements.request_id, engagements.item_id
),

final as (
    select
        requests.request_id,
        impressions.item_id,
        requests.canvas,
        requests.user_id,
        requests.country,
        requests.device,
        requests.source_item_id,
        requests.query_text,
        requests.category,
        impressions.position,
        coalesce(engagements_attributed.grade, 0) as label,
        requests.requested_at,
        engagements_attributed.engaged_at
    from impressions
    inner join requests
        on impressions.request_id = requests.request_id
    left join engagements_attributed
        on impressions.request_id = engagements_attributed.request_id
        and impressions.item_id = engagements_attributed.item_id
)

select * from final
