{#- First-stage candidate sources for serving, one row per (source, retrieval key, item) with the
    item's rank within that key; each keeps vars.serving.items_per_source items per key. All use
    engagements strictly before the serving clock:
      popular_in_canvas    key task_type       most engaged in the canvas over the lookback (engagements
                                               without a canvas count for every canvas)
      popular_in_category  key item category   most engaged of the category over the lookback
      coengagement         key source item     most co-engaged items (int_item_pairs), all history
      title_match          key query text      title shares query words; match share, then popularity
      user_categories      key user            popular items of the user's 3 most engaged categories
    Only the sources some canvas of the registry uses (in `sources` or `fallbacks`) are built. -#}
{%- set per_source = unirank_registry().serving.items_per_source -%}
{%- set used = {} -%}
{%- for source in ['popular_in_canvas', 'popular_in_category', 'coengagement', 'title_match', 'user_categories'] -%}
  {%- do used.update({source: unirank_uses(source)}) -%}
{%- endfor -%}
{%- do used.update({'popular_in_category': used.popular_in_category or used.user_categories}) -%}

with

serving_clock as (
    select * from {{ ref('int_serving_clock') }}
),

engagement_history as (
    select * from {{ ref('int_engagement_history') }}
),

{% if used.coengagement -%}
item_pairs as (
    select * from {{ ref('int_item_pairs') }}
),
{%- endif %}

serving_contexts as (
    select * from {{ ref('int_serving_contexts') }}
),

history_before_clock as (
    select engagement_history.*
    from engagement_history
    cross join serving_clock
    where engagement_history.engaged_at < serving_clock.as_of
),

recent_history as (
    select history_before_clock.*
    from history_before_clock
    cross join serving_clock
    where history_before_clock.engaged_at >= serving_clock.lookback_from
),

item_popularity as (
    select
        item_id,
        count(*) as engagements
    from recent_history
    group by item_id
),

canvas_names as (
    {% for canvas in unirank_registry().canvases %}
    select cast('{{ canvas.name }}' as {{ dbt.type_string() }}) as task_type
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

recent_history_by_canvas as (
    -- an engagement the log does not attribute to a canvas (task_type NULL) counts for every canvas
    select
        canvas_names.task_type,
        recent_history.item_id
    from recent_history
    inner join canvas_names
        on recent_history.task_type = canvas_names.task_type
        or recent_history.task_type is null
),

popular_in_canvas as (
    select
        task_type as retrieval_key,
        item_id,
        row_number() over (partition by task_type order by count(*) desc, item_id) as source_rank
    from recent_history_by_canvas
    group by task_type, item_id
),

{% if used.popular_in_category -%}
popular_in_category as (
    select
        item_category as retrieval_key,
        item_id,
        row_number() over (partition by item_category order by count(*) desc, item_id) as source_rank
    from recent_history
    where item_category is not null
    group by item_category, item_id
),
{%- endif %}

{% if used.coengagement -%}
coengagement as (
    select
        item_pairs.item_a as retrieval_key,
        item_pairs.item_b as item_id,
        row_number() over (partition by item_pairs.item_a order by count(*) desc, item_pairs.item_b) as source_rank
    from item_pairs
    cross join serving_clock
    where item_pairs.engaged_at < serving_clock.as_of
    group by item_pairs.item_a, item_pairs.item_b
),
{%- endif %}

{% if used.title_match -%}
serving_queries as (
    select distinct query_text
    from serving_contexts
    where query_text <> {{ sentinel_of('query_text') }}
),

title_match as (
    select
        query_title_matches.query_text as retrieval_key,
        query_title_matches.item_id,
        row_number() over (
            partition by query_title_matches.query_text
            order by
                query_title_matches.match_share desc,
                coalesce(item_popularity.engagements, 0) desc,
                query_title_matches.item_id
        ) as source_rank
    from {{ ref('int_query_title_matches') }} as query_title_matches
    inner join serving_queries
        on query_title_matches.query_text = serving_queries.query_text
    left join item_popularity
        on query_title_matches.item_id = item_popularity.item_id
),
{%- endif %}

{% if used.user_categories -%}
serving_users as (
    select distinct user_id
    from serving_contexts
    where user_id <> {{ sentinel_of('user_id') }}
),

user_top_categories as (
    select
        history_before_clock.user_id,
        history_before_clock.item_category,
        row_number() over (
            partition by history_before_clock.user_id
            order by count(*) desc, history_before_clock.item_category
        ) as category_rank
    from history_before_clock
    inner join serving_users
        on history_before_clock.user_id = serving_users.user_id
    where history_before_clock.item_category is not null
    group by history_before_clock.user_id, history_before_clock.item_category
),

user_categories as (
    select
        user_top_categories.user_id as retrieval_key,
        popular_in_category.item_id,
        row_number() over (
            partition by user_top_categories.user_id
            order by popular_in_category.source_rank, user_top_categories.category_rank, popular_in_category.item_id
        ) as source_rank
    from user_top_categories
    inner join popular_in_category
        on user_top_categories.item_category = popular_in_category.retrieval_key
        -- exact: a row ranked below {{ per_source }} in its category follows at least {{ per_source }}
        -- rows of the same category for the user, and joining every item of every category to
        -- every user grows as users x items (194 s of a 10M-impression build before this filter)
        and popular_in_category.source_rank <= {{ per_source }}
    where user_top_categories.category_rank <= 3
),
{%- endif %}

sources_unioned as (
    {%- set parts = [] -%}
    {%- for source, is_used in used.items() if is_used -%}
      {%- do parts.append(source) -%}
    {%- endfor %}
    {% for source in parts -%}
    select '{{ source }}' as source, retrieval_key, item_id, source_rank from {{ source }}
    {% if not loop.last %}union all{% endif %}
    {% endfor -%}
    {%- if parts | length == 0 -%}
    select 'popular_in_canvas' as source, retrieval_key, item_id, source_rank from popular_in_canvas
    {%- endif %}
),

final as (
    select
        cast(source as {{ dbt.type_string() }}) as source,
        cast(retrieval_key as {{ dbt.type_string() }}) as retrieval_key,
        cast(item_id as {{ dbt.type_string() }}) as item_id,
        cast(source_rank as {{ dbt.type_bigint() }}) as source_rank
    from sources_unioned
    where source_rank <= {{ per_source }}
)

select * from final
