{#- The lookup-time fallback sources: one row per (source, key, rank) with the item, for
    popular_in_canvas (key: canvas), popular_in_category (key: category), coengagement (key:
    source item) and title_match (key: known query), at most vars.serving.fallback_items_per_key
    per key. Copied into every published cache. -#}
{%- set per_key = unirank_registry().serving.fallback_items_per_key -%}
with

retrieval_sources as (
    select * from {{ ref('int_retrieval_sources') }}
),

final as (
    select
        source,
        retrieval_key,
        source_rank,
        item_id
    from retrieval_sources
    where source in ('popular_in_canvas', 'popular_in_category', 'coengagement', 'title_match')
        and source_rank <= {{ per_key }}
)

select * from final
