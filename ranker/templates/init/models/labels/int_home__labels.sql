{#- The label model of the `home` canvas (registry canvases[home].label_model). The contract
    unirank reads from every label model - one row per (request, candidate item):
      request_id    unique across canvases (unirank unions every canvas)
      item_id       the candidate
      label         graded: 0 = shown and not engaged, higher = stronger engagement
      requested_at  the request's time (UTC timestamp)
      + the context columns the canvas fills (canvases[home].context_columns: user_id)
    Candidate rules (exclude_engaged, exclude_source_item) are applied by unirank, as in serving.
    A home request without a user cannot be personalised: it is not a home example. -#}
with

impressions as (
    select * from {{ ref('stg_sample__impressions') }}
    where quarantine_reason is null
        and canvas = 'home'
),

final as (
    select
        request_id,
        item_id,
        user_id,
        max(case when is_clicked then 1 else 0 end) as label,
        min(requested_at) as requested_at
    from impressions
    where user_id is not null
    group by request_id, item_id, user_id
)

select * from final
