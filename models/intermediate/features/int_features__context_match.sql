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

search_probes as (
    select distinct request_id, query_text
    from feature_probes
    where query_text <> {{ sentinel_of('query_text') }}
),

query_tokens as (
    {{ split_tokens('search_probes', ['request_id'], 'query_text') }}
),

title_tokens as (
    {{ split_tokens('items', ['item_id'], 'title') }}
),

query_lengths as (
    select
        request_id,
        count(*) as n_query_tokens
    from query_tokens
    group by request_id
),

tokens_matched as (
    select
        feature_probes.request_id,
        feature_probes.item_id,
        count(*) as n_matched
    from feature_probes
    inner join query_tokens
        on feature_probes.request_id = query_tokens.request_id
    inner join title_tokens
        on feature_probes.item_id = title_tokens.item_id
        and query_tokens.token = title_tokens.token
    group by feature_probes.request_id, feature_probes.item_id
),

final as (
    select
        feature_probes.request_id,
        feature_probes.item_id,
        items.category as item_category,
        case
            when query_lengths.request_id is null then -1.0
            else coalesce(tokens_matched.n_matched, 0) / cast(query_lengths.n_query_tokens as {{ type_double() }})
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
    left join query_lengths
        on feature_probes.request_id = query_lengths.request_id
    left join tokens_matched
        on feature_probes.request_id = tokens_matched.request_id
        and feature_probes.item_id = tokens_matched.item_id
)

select * from final
