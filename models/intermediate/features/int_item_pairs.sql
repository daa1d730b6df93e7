{#- Co-engagement events: one row per (item_a, item_b, time) where a user engaged with item_b
    within `coengagement_lags` engagements after item_a, in both directions. Shared by the
    co-engagement feature and the co-engagement candidate source. -#}
{{ config(enabled=unirank_uses('int_features__coengagement') or unirank_uses('coengagement')) }}
{%- set lags = unirank_registry().coengagement_lags -%}

with

engagement_history as (
    select * from {{ ref('int_engagement_history') }}
    where user_id is not null
),

history_lagged as (
    select
        item_id,
        engaged_at,
        {% for k in range(1, lags + 1) -%}
        lag(item_id, {{ k }}) over (
            partition by user_id
            order by engaged_at, request_id, item_id
        ) as previous_item_{{ k }}{% if not loop.last %},{% endif %}
        {% endfor %}
    from engagement_history
),

final as (
    {% for k in range(1, lags + 1) %}
    select previous_item_{{ k }} as item_a, item_id as item_b, engaged_at from history_lagged
    where previous_item_{{ k }} is not null and previous_item_{{ k }} <> item_id
    union all
    select item_id as item_a, previous_item_{{ k }} as item_b, engaged_at from history_lagged
    where previous_item_{{ k }} is not null and previous_item_{{ k }} <> item_id
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select * from final
