{#- The history features look back on: one row per engaged (request, item) of the demo logs, from
    every canvas and every request (sampled or not), at the time of the first engagement. -#}
with

impressions_graded as (
    select * from {{ ref('int_demo__impressions_graded') }}
),

items as (
    select * from {{ ref('int_demo__items') }}
),

final as (
    select
        impressions_graded.request_id,
        impressions_graded.item_id,
        impressions_graded.canvas as task_type,
        impressions_graded.user_id,
        items.category as item_category,
        impressions_graded.label as grade,
        impressions_graded.engaged_at
    from impressions_graded
    inner join items
        on impressions_graded.item_id = items.item_id
    where impressions_graded.label > 0
)

select * from final
