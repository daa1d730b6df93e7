{#- How the candidate matches the request's own context (static, no history):
    query_title_match      search: share of the query's words found in the candidate's title;
    category_match         category pages: 1 if the candidate is in the browsed category;
    source_category_match  related: 1 if the candidate shares the source item's category;
    is_available_in_country  1 if the candidate is available in the request's country.
    -1 where the context has no value for it (the feature does not apply to that canvas). -#}
with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
),

items as (
    select * from {{ ref('int_items') }}
),

query_title_matches as (
    select * from {{ ref('int_query_title_matches') }}
),

final as (
    select
        feature_probes.request_id,
        feature_probes.item_id,
        items.category as item_category,
        case
            when feature_probes.query_text = {{ sentinel_of('query_text') }} then -1.0
            else coalesce(query_title_matches.match_share, 0.0)
        end as query_title_match,
        case
            when feature_probes.category = {{ sentinel_of('category') }} then -1
            when items.category = feature_probes.category then 1
            else 0
        end as category_match,
        case
            when feature_probes.source_item_id = {{ sentinel_of('source_item_id') }} then -1
            when source_items.category = items.category then 1
            else 0
        end as source_category_match,
        case
            when feature_probes.country = {{ sentinel_of('country') }} or items.item_id is null then -1
            when {{ dbt.position("'|' || feature_probes.country || '|'", "'|' || items.available_countries || '|'") }} > 0 then 1
            else 0
        end as is_available_in_country
    from feature_probes
    left join items
        on feature_probes.item_id = items.item_id
    left join items as source_items
        on feature_probes.source_item_id = source_items.item_id
    left join query_title_matches
        on feature_probes.query_text = query_title_matches.query_text
        and feature_probes.item_id = query_title_matches.item_id
)

select * from final
