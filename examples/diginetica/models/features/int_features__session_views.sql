{#- Diginetica's own feature model: what the request's visit (context column session_id) viewed
    strictly before the request - the candidate itself (`session_item_views`), items of its
    category (`session_category_views`) and anything (`session_views`). One row per probe with a
    visit; a serving context has none (the cache is precomputed per source item, category or
    user), so serving probes get the defaults. A view at the request's own time - the view a
    related request is about - is not before it and never counts. -#}
with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
    where session_id <> {{ unirank.sentinel_of('session_id') }}
),

item_views as (
    select * from {{ ref('stg_diginetica__item_views') }}
    where quarantine_reason is null
),

items as (
    select * from {{ ref('int_diginetica__items') }}
),

visit_views as (
    select
        {{ dbt.concat(['item_views.session_id', "'@'", 'cast(item_views.event_date as ' ~ dbt.type_string() ~ ')']) }} as visit_id,
        item_views.item_id,
        items.category,
        item_views.viewed_at
    from item_views
    left join items
        on item_views.item_id = items.item_id
),

final as (
    select
        feature_probes.request_id,
        feature_probes.item_id,
        sum(case when visit_views.item_id = feature_probes.item_id then 1 else 0 end) as session_item_views,
        sum(case when visit_views.category = candidates.category then 1 else 0 end) as session_category_views,
        count(visit_views.item_id) as session_views
    from feature_probes
    left join items as candidates
        on feature_probes.item_id = candidates.item_id
    left join visit_views
        on feature_probes.session_id = visit_views.visit_id
        and visit_views.viewed_at < feature_probes.requested_at
    group by feature_probes.request_id, feature_probes.item_id
)

select * from final
