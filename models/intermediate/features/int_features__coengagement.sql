{#- Source-candidate co-engagement as of each probe with a source item (the related canvas): how
    often, strictly before the request, a user engaged with one of the two items and then with the
    other within their next `coengagement_lags` engagements (either order). -#}
{%- set lags = var('coengagement_lags', 3) -%}
{%- if lags is not number or lags < 1 -%}
  {{ exceptions.raise_compiler_error("vars.coengagement_lags must be a positive integer, got " ~ lags) }}
{%- endif -%}

with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
    where source_item_id <> {{ sentinel_of('source_item_id') }}
),

engagement_history as (
    select * from {{ ref('int_engagement_history') }}
    where user_id is not null
),

history_lagged as (
    select
        item_id,
        {{ epoch_microseconds('engaged_at') }} as at_us,
        {% for k in range(1, lags + 1) -%}
        lag(item_id, {{ k }}) over (
            partition by user_id
            order by engaged_at, request_id, item_id
        ) as previous_item_{{ k }}{% if not loop.last %},{% endif %}
        {% endfor %}
    from engagement_history
),

item_pairs as (
    {% for k in range(1, lags + 1) %}
    select previous_item_{{ k }} as item_a, item_id as item_b, at_us from history_lagged
    where previous_item_{{ k }} is not null and previous_item_{{ k }} <> item_id
    union all
    select item_id as item_a, previous_item_{{ k }} as item_b, at_us from history_lagged
    where previous_item_{{ k }} is not null and previous_item_{{ k }} <> item_id
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

events_and_probes as (
    select
        cast(null as {{ dbt.type_string() }}) as request_id,
        item_a,
        item_b,
        at_us,
        1 as is_event
    from item_pairs
    union all
    select
        request_id,
        source_item_id as item_a,
        item_id as item_b,
        requested_at_us as at_us,
        0 as is_event
    from feature_probes
),

pairs_counted as (
    select
        request_id,
        item_b as item_id,
        is_event,
        sum(is_event) {{ strictly_before(['item_a', 'item_b']) }} as source_coengagement
    from events_and_probes
),

final as (
    select
        request_id,
        item_id,
        coalesce(source_coengagement, 0) as source_coengagement
    from pairs_counted
    where is_event = 0
)

select * from final
