{#- One row per (visit, item) engaged in it - viewed or purchased - with the grade (2 purchased,
    1 viewed only), the first and last event times, the visit's user (NULL if anonymous) and the item's
    category. A visit is a session on one event date (`<session_id>@<date>`): the log's session
    ids can span months, and a visit never crosses the split's midnight cuts, so every label of a
    visit lands in one split. Events of items missing from the catalogue are left out. -#}
with

item_views as (
    select * from {{ ref('stg_diginetica__item_views') }}
    where quarantine_reason is null
),

purchases as (
    select * from {{ ref('stg_diginetica__purchases') }}
    where quarantine_reason is null
),

items as (
    select * from {{ ref('int_diginetica__items') }}
),

events_unioned as (
    select session_id, event_date, user_id, item_id, 1 as grade, viewed_at as event_at from item_views
    union all
    select session_id, event_date, user_id, item_id, 2 as grade, purchased_at as event_at from purchases
),

events_by_visit as (
    select
        {{ dbt.concat(['session_id', "'@'", 'cast(event_date as ' ~ dbt.type_string() ~ ')']) }} as visit_id,
        user_id,
        item_id,
        grade,
        event_at
    from events_unioned
),

visit_users as (
    select
        visit_id,
        max(user_id) as user_id
    from events_by_visit
    group by visit_id
),

final as (
    select
        events_by_visit.visit_id,
        events_by_visit.item_id,
        visit_users.user_id,
        items.category as item_category,
        max(events_by_visit.grade) as grade,
        min(events_by_visit.event_at) as engaged_at,
        max(events_by_visit.event_at) as last_engaged_at
    from events_by_visit
    inner join items
        on events_by_visit.item_id = items.item_id
    inner join visit_users
        on events_by_visit.visit_id = visit_users.visit_id
    group by
        events_by_visit.visit_id,
        events_by_visit.item_id,
        visit_users.user_id,
        items.category
)

select * from final
