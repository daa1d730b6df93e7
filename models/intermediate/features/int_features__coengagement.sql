{#- Built-in feature model (needs the context column source_item_id). Source-candidate co-engagement as of each probe with a source item (the related canvas): how
    often, strictly before the request, a user engaged with one of the two items and then with the
    other within their next `coengagement_lags` engagements (either order; see int_item_pairs). -#}
{{ config(enabled=unirank_uses('int_features__coengagement')) }}
with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
    where source_item_id <> {{ sentinel_of('source_item_id') }}
),

item_pairs as (
    select * from {{ ref('int_item_pairs') }}
),

events_and_probes as (
    select
        cast(null as {{ dbt.type_string() }}) as request_id,
        item_a,
        item_b,
        {{ epoch_microseconds('engaged_at') }} as at_us,
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
