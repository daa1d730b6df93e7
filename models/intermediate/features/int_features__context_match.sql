{#- Built-in feature model: how the candidate matches the request's own context (static, no
    history), one column per context column the registry declares:
    query_title_match        query_text: share of the query's words found in the title;
    category_match           category: 1 if the candidate is in the browsed category;
    source_category_match    source_item_id: 1 if the candidate shares the source's category;
    is_available_in_country  country: 1 if the candidate is available in the request's country
                             (an item whose availability is unknown, '', is available everywhere).
    -1 where the context column holds its sentinel (the feature does not apply to the canvas). -#}
{{ config(enabled=unirank_uses('int_features__context_match')) }}
{%- set context = unirank_registry().context_names -%}

with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
),

items as (
    select * from {{ ref('int_items') }}
),

{% if 'query_text' in context -%}
query_title_matches as (
    select * from {{ ref('int_query_title_matches') }}
),
{%- endif %}

final as (
    select
        feature_probes.request_id,
        feature_probes.item_id,
        {% if 'query_text' in context -%}
        case
            when feature_probes.query_text = {{ sentinel_of('query_text') }} then -1.0
            else coalesce(query_title_matches.match_share, 0.0)
        end as query_title_match,
        {% endif -%}
        {% if 'category' in context -%}
        case
            when feature_probes.category = {{ sentinel_of('category') }} then -1
            when items.category = feature_probes.category then 1
            else 0
        end as category_match,
        {% endif -%}
        {% if 'source_item_id' in context -%}
        case
            when feature_probes.source_item_id = {{ sentinel_of('source_item_id') }} then -1
            when source_items.category = items.category then 1
            else 0
        end as source_category_match,
        {% endif -%}
        {% if 'country' in context -%}
        case
            when feature_probes.country = {{ sentinel_of('country') }} or items.item_id is null then -1
            when items.available_countries = '' then 1
            when {{ dbt.position("'|' || feature_probes.country || '|'", "'|' || items.available_countries || '|'") }} > 0 then 1
            else 0
        end as is_available_in_country,
        {% endif -%}
        feature_probes.task_type
    from feature_probes
    left join items
        on feature_probes.item_id = items.item_id
    {% if 'source_item_id' in context -%}
    left join items as source_items
        on feature_probes.source_item_id = source_items.item_id
    {% endif -%}
    {% if 'query_text' in context -%}
    left join query_title_matches
        on feature_probes.query_text = query_title_matches.query_text
        and feature_probes.item_id = query_title_matches.item_id
    {%- endif %}
)

select * from final
