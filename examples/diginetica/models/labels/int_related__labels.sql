{#- Diginetica related: within a visit's views in time order, each move from one item to a
    different next item is a request, asked when the next item was viewed. Source item: the item
    viewed before; positive: the next item (2 if the visit bought it, else 1); negatives: sampled
    (pool __all__, never an item the visit or its known user engages with at or after the request, never the source). -#}
with

item_views as (
    select * from {{ ref('stg_diginetica__item_views') }}
    where quarantine_reason is null
),

visit_items as (
    select * from {{ ref('int_diginetica__visit_items') }}
),

negative_pool as (
    select * from {{ ref('int_diginetica__negative_pool') }}
),

visit_positives as (
    select * from {{ ref('int_diginetica__visit_positives') }}
),

views_by_visit as (
    select
        {{ dbt.concat(['session_id', "'@'", 'cast(event_date as ' ~ dbt.type_string() ~ ')']) }} as visit_id,
        item_id,
        viewed_at
    from item_views
),

views_sequenced as (
    select
        views_by_visit.visit_id,
        views_by_visit.item_id,
        visit_items.user_id,
        visit_items.grade,
        views_by_visit.viewed_at,
        lag(views_by_visit.item_id) over (
            partition by views_by_visit.visit_id
            order by views_by_visit.viewed_at, views_by_visit.item_id
        ) as source_item_id,
        row_number() over (
            partition by views_by_visit.visit_id
            order by views_by_visit.viewed_at, views_by_visit.item_id
        ) as view_number
    from views_by_visit
    inner join visit_items
        on views_by_visit.visit_id = visit_items.visit_id
        and views_by_visit.item_id = visit_items.item_id
),

requests as (
    select
        {{ dbt.concat(["'dg-related|'", 'visit_id', "'|'", 'cast(view_number as ' ~ dbt.type_string() ~ ')']) }} as request_id,
        visit_id,
        visit_id as session_id,
        source_item_id,
        user_id,
        item_id,
        grade,
        viewed_at as requested_at
    from views_sequenced
    where source_item_id is not null
        and source_item_id <> item_id
),

positives as (
    select request_id, item_id, grade as label from requests
),

final as (
    {{ unirank.labels_with_sampled_negatives('requests', 'positives', 'negative_pool', 'visit_positives', pool_key="'__all__'", exclusion_key='visit_id', context_columns=['source_item_id', 'user_id', 'session_id'], excluded_item_id='source_item_id') }}
)

select * from final
