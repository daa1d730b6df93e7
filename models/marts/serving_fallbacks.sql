{#- The lookup-time fallback sources: one row per (source, key, rank) with the item, for
    popular_in_canvas (key: canvas), popular_in_category (key: category), coengagement (key:
    source item) and title_match (key: known query). Copied into every published cache. -#}
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
)

select * from final
