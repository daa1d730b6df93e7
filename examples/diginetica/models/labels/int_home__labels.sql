{#- Diginetica home: a visit (a session on one day) of a known user, asked at its first event.
    Positives: the items the visit engaged with, the first 10 in time order (2 bought, 1 viewed);
    negatives: sampled (pool __all__, never an item the visit or that user engages with at or after the request). Anonymous
    visits are not home examples. -#}
with

visit_items as (
    select * from {{ ref('int_diginetica__visit_items') }}
    where user_id is not null
),

negative_pool as (
    select * from {{ ref('int_diginetica__negative_pool') }}
),

visit_positives as (
    select * from {{ ref('int_diginetica__visit_positives') }}
),

visits as (
    select
        {{ dbt.concat(["'dg-home|'", 'visit_id']) }} as request_id,
        visit_id,
        visit_id as session_id,
        user_id,
        min(engaged_at) as requested_at
    from visit_items
    group by visit_id, user_id
),

positives_ranked as (
    select
        visits.request_id,
        visit_items.item_id,
        visit_items.grade,
        row_number() over (
            partition by visit_items.visit_id
            order by visit_items.engaged_at, visit_items.item_id
        ) as positive_rank
    from visit_items
    inner join visits
        on visit_items.visit_id = visits.visit_id
),

positives as (
    select request_id, item_id, grade as label from positives_ranked where positive_rank <= 10
),

final as (
    {{ unirank.labels_with_sampled_negatives('visits', 'positives', 'negative_pool', 'visit_positives', pool_key="'__all__'", exclusion_key='visit_id', context_columns=['user_id', 'session_id']) }}
)

select * from final
