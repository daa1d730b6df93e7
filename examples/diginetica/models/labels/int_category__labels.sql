{#- Diginetica category: each (visit, item) engaged is a request on the item's category page,
    asked at the first event. Positive: the item (2 bought, 1 viewed); negatives: sampled from the
    same category (pool <category>, never an item the visit or its known user engages with at or after the request); a request
    whose category has nothing else to draw from gets no negatives and carries no signal. -#}
with

visit_items as (
    select * from {{ ref('int_diginetica__visit_items') }}
),

negative_pool as (
    select * from {{ ref('int_diginetica__negative_pool') }}
),

visit_positives as (
    select * from {{ ref('int_diginetica__visit_positives') }}
),

requests as (
    select
        {{ dbt.concat(["'dg-category|'", 'visit_id', "'|'", 'item_id']) }} as request_id,
        visit_id,
        visit_id as session_id,
        item_category as category,
        user_id,
        item_id,
        grade,
        engaged_at as requested_at
    from visit_items
),

positives as (
    select request_id, item_id, grade as label from requests
),

final as (
    {{ unirank.labels_with_sampled_negatives('requests', 'positives', 'negative_pool', 'visit_positives', pool_key='category', exclusion_key='visit_id', context_columns=['category', 'user_id', 'session_id']) }}
)

select * from final
