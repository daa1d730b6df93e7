{#- What online scoring (ranker.online) reads for the source_coengagement feature: one row per
    (item_a, item_b) with their co-engagements (int_item_pairs) strictly before the serving
    clock. Built with the int_features__coengagement feature; copied into every published
    recommendations cache. -#}
{{ config(enabled=unirank_uses('int_features__coengagement')) }}

with

item_pairs as (
    select * from {{ ref('int_item_pairs') }}
),

serving_clock as (
    select * from {{ ref('int_serving_clock') }}
),

final as (
    select
        item_pairs.item_a,
        item_pairs.item_b,
        count(*) as coengagements
    from item_pairs
    cross join serving_clock
    where item_pairs.engaged_at < serving_clock.as_of
    group by item_pairs.item_a, item_pairs.item_b
)

select * from final
