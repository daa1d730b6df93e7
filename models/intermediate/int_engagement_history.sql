{#- The selected dataset's engagement history (int_<dataset>__engagement_history): the events
    point-in-time features look back on. `task_type` is the canvas the engagement happened on, or
    NULL when the log does not say (it then counts for every canvas). -#}
with

dataset_engagements as (
    select * from {{ dataset_ref('engagement_history') }}
),

final as (
    select
        request_id,
        item_id,
        task_type,
        user_id,
        item_category,
        grade,
        engaged_at
    from dataset_engagements
)

select * from final
