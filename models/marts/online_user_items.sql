{#- What online scoring (ranker.online) reads for a user's history as of the serving clock: one
    row per (user, item) the user engaged with strictly before it, with the item's category as
    the history records it and the count. The user_history features, the user_categories
    source and the exclude_engaged rule follow from it at request time (tested against the
    SQL features by the online-vs-batch skew check). Built when the registry declares user_id;
    copied into every published recommendations cache. -#}
{{ config(enabled=unirank_uses('user_id')) }}

with

engagement_history as (
    select * from {{ ref('int_engagement_history') }}
),

serving_clock as (
    select * from {{ ref('int_serving_clock') }}
),

final as (
    select
        engagement_history.user_id,
        engagement_history.item_id,
        engagement_history.item_category,
        count(*) as engagements
    from engagement_history
    cross join serving_clock
    where engagement_history.user_id is not null
        and engagement_history.engaged_at < serving_clock.as_of
    group by engagement_history.user_id, engagement_history.item_id, engagement_history.item_category
)

select * from final
