{#- The engagement history unirank's features and candidate sources look back on (registry
    inputs.engagements): one row per engagement, every canvas, every request. Contract:
      request_id   the request (any event id; unique with item_id)
      item_id      the engaged item
      task_type    the canvas it happened on, or NULL when the log does not say
      user_id      NULL for an anonymous engagement
      grade        1 = click (2 = purchase, ... when the log has them)
      engaged_at   when: here the click is logged with its request's time -#}
with

impressions as (
    select * from {{ ref('stg_sample__impressions') }}
    where quarantine_reason is null
),

final as (
    select
        request_id,
        item_id,
        canvas as task_type,
        user_id,
        1 as grade,
        min(requested_at) as engaged_at
    from impressions
    where is_clicked
    group by request_id, item_id, canvas, user_id
)

select * from final
