{#- The items never drawn as a visit's negatives: everything the visit engaged with and, for a
    known user, everything that user engaged with on any visit. -#}
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

user_items as (
    select distinct
        visits.visit_id,
        visit_items.item_id
    from visits
    inner join visit_items
        on visits.user_id = visit_items.user_id
),

final as (
    select visit_id as exclusion_key, item_id from visit_items
    union
    select visit_id as exclusion_key, item_id from user_items
)

select * from final
