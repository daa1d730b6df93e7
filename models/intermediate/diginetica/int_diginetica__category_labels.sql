{#- Diginetica category: each (visit, item) engaged is a request on the item's category page,
    asked at the first event. Positive: the item (2 bought, 1 viewed); negatives: sampled from the
    same category (pool <category>, never an item the visit or its known user engages with at or after the request); a request
    whose category has nothing else to draw from gets no negatives and carries no signal. -#}
{%- set sampling = registry_var('negative_sampling', {}) -%}
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
        item_category as category,
        user_id,
        item_id,
        grade,
        engaged_at as requested_at
    from visit_items
),

negative_requests as (
    select
        request_id,
        category as pool_key,
        visit_id as exclusion_key,
        requested_at,
        cast(null as {{ dbt.type_string() }}) as excluded_item_id
    from requests
),

negatives as (
    {{ sampled_negatives('negative_requests', 'negative_pool', 'visit_positives', sampling.get('negatives_per_request', 20), sampling.get('seed', 0)) }}
),

candidates as (
    select request_id, item_id, grade as label from requests
    union all
    select request_id, item_id, 0 as label from negatives
),

final as (
    select
        candidates.request_id,
        candidates.item_id,
        requests.category,
        requests.user_id,
        candidates.label,
        requests.requested_at
    from candidates
    inner join requests
        on candidates.request_id = requests.request_id
)

select * from final
