{#- Each visit's engagements with the time of the last one: everything the visit engaged with
    and, for a known user, everything that user engaged with on any visit. An item is never drawn
    as the visit's negative for a request at or before that time (a false negative); earlier
    engagements stay eligible. -#}
with

visit_items as (
    select * from {{ ref('int_diginetica__visit_items') }}
),

visits as (
    select distinct
        visit_id,
        user_id
    from visit_items
),

owner_items as (
    select
        visit_id,
        item_id,
        last_engaged_at
    from visit_items
    union all
    select
        visits.visit_id,
        visit_items.item_id,
        visit_items.last_engaged_at
    from visits
    inner join visit_items
        on visits.user_id = visit_items.user_id
),

final as (
    select
        visit_id as exclusion_key,
        item_id,
        max(last_engaged_at) as last_engaged_at
    from owner_items
    group by visit_id, item_id
)

select * from final
