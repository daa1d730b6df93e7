{#- Built-in feature model (needs the context column user_id). The user's history as of each probe with a known user: engagements strictly before the request
    in total, with the candidate's category (and that share: the affinity), and with the candidate
    itself. Anonymous probes are absent here and get the declared defaults. -#}
{{ config(enabled=unirank_uses('int_features__user_history')) }}
with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
    where user_id <> {{ sentinel_of('user_id') }}
),

engagement_history as (
    select * from {{ ref('int_engagement_history') }}
    where user_id is not null
),

items as (
    select * from {{ ref('int_items') }}
),

events_and_probes as (
    select
        cast(null as {{ dbt.type_string() }}) as request_id,
        user_id,
        item_id,
        item_category,
        {{ epoch_microseconds('engaged_at') }} as at_us,
        1 as is_event
    from engagement_history
    union all
    select
        feature_probes.request_id,
        feature_probes.user_id,
        feature_probes.item_id,
        items.category as item_category,
        feature_probes.requested_at_us as at_us,
        0 as is_event
    from feature_probes
    left join items
        on feature_probes.item_id = items.item_id
),

engagements_counted as (
    select
        request_id,
        item_id,
        is_event,
        sum(is_event) {{ strictly_before(['user_id']) }} as user_engagements,
        sum(is_event) {{ strictly_before(['user_id', 'item_category']) }} as user_category_engagements,
        sum(is_event) {{ strictly_before(['user_id', 'item_id']) }} as user_item_engagements
    from events_and_probes
),

final as (
    select
        request_id,
        item_id,
        coalesce(user_engagements, 0) as user_engagements,
        coalesce(user_category_engagements, 0) as user_category_engagements,
        case
            when coalesce(user_engagements, 0) = 0 then 0.0
            else cast(coalesce(user_category_engagements, 0) as {{ type_double() }}) / user_engagements
        end as user_category_affinity,
        coalesce(user_item_engagements, 0) as user_item_engagements
    from engagements_counted
    where is_event = 0
)

select * from final
