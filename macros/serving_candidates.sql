{% macro serving_candidates() %}
  {#- The body of int_serving_candidates: per serving context, the items of its canvas's
      `sources` (in declared order), joined on the key each source is keyed by; an item found by
      several sources keeps its first; the canvas's candidate rules apply as in training
      (`exclude_source_item`, `exclude_engaged`); at most serving.candidates_per_context. -#}
  {%- set registry = unirank.unirank_registry() -%}
  {%- set cap = registry.serving.candidates_per_context -%}
  {%- set context = registry.context_names -%}
  {%- set has_source = 'source_item_id' in context -%}
  {%- set has_user = 'user_id' in context -%}
  {%- if 'category' in context and has_source -%}
    {%- set category_key = "case when serving_contexts.category <> " ~ unirank.sentinel_of('category') ~ " then serving_contexts.category else source_items.category end" -%}
  {%- elif 'category' in context -%}
    {%- set category_key = 'serving_contexts.category' -%}
  {%- else -%}
    {%- set category_key = 'source_items.category' -%}
  {%- endif -%}
  {%- set source_keys = {
      'popular_in_canvas': 'serving_contexts.task_type',
      'popular_in_category': category_key,
      'coengagement': 'serving_contexts.source_item_id',
      'title_match': 'serving_contexts.query_text',
      'user_categories': 'serving_contexts.user_id'} -%}
  {%- set canvases = registry.canvases | selectattr('serving') | list -%}
  {%- set no_source_item = canvases | selectattr('exclude_source_item') | map(attribute='name') | list if has_source else [] -%}
  {%- set no_engaged = canvases | selectattr('exclude_engaged') | map(attribute='name') | list if has_user else [] -%}

with

serving_contexts as (
    select * from {{ ref('int_serving_contexts') }}
),

retrieval_sources as (
    select * from {{ ref('int_retrieval_sources') }}
),

items as (
    select * from {{ ref('int_items') }}
),

engagement_history as (
    select * from {{ ref('int_engagement_history') }}
),

serving_clock as (
    select * from {{ ref('int_serving_clock') }}
),

candidates_found as (
    {%- set parts = [] -%}
    {%- for canvas in canvases -%}
      {%- for source in canvas.serving.sources -%}
        {%- do parts.append((canvas.name, source, loop.index)) -%}
      {%- endfor -%}
    {%- endfor %}
    {% if parts | length == 0 -%}
    select
        cast(null as {{ dbt.type_string() }}) as request_id,
        cast(null as {{ dbt.type_string() }}) as item_id,
        cast(null as {{ dbt.type_string() }}) as candidate_source,
        0 as source_priority,
        cast(0 as {{ dbt.type_bigint() }}) as source_rank
    where 1 = 0
    {%- endif %}
    {% for canvas_name, source, priority in parts %}
    select
        serving_contexts.request_id,
        retrieval_sources.item_id,
        '{{ source }}' as candidate_source,
        {{ priority }} as source_priority,
        retrieval_sources.source_rank
    from serving_contexts
    {% if has_source -%}
    left join items as source_items
        on serving_contexts.source_item_id = source_items.item_id
    {% endif -%}
    inner join retrieval_sources
        on retrieval_sources.source = '{{ source }}'
        and retrieval_sources.retrieval_key = {{ source_keys[source] }}
    where serving_contexts.task_type = '{{ canvas_name }}'
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

{% if no_engaged %}
engaged_pairs as (
    select distinct
        engagement_history.user_id,
        engagement_history.item_id
    from engagement_history
    cross join serving_clock
    where engagement_history.user_id is not null
        and engagement_history.engaged_at < serving_clock.as_of
),
{% endif %}

candidates_ranked as (
    select
        candidates_found.*,
        row_number() over (
            partition by candidates_found.request_id, candidates_found.item_id
            order by candidates_found.source_priority, candidates_found.source_rank
        ) as duplicate_rank
    from candidates_found
),

candidates_filtered as (
    select
        candidates_ranked.request_id,
        candidates_ranked.item_id,
        candidates_ranked.candidate_source,
        candidates_ranked.source_priority,
        candidates_ranked.source_rank
    from candidates_ranked
    inner join serving_contexts
        on candidates_ranked.request_id = serving_contexts.request_id
    {% if no_engaged -%}
    left join engaged_pairs
        on serving_contexts.user_id = engaged_pairs.user_id
        and candidates_ranked.item_id = engaged_pairs.item_id
        and serving_contexts.task_type in ({{ unirank.unirank_quoted(no_engaged) }})
    {% endif -%}
    where candidates_ranked.duplicate_rank = 1
        {% if no_source_item -%}
        and (
            candidates_ranked.item_id <> serving_contexts.source_item_id
            or serving_contexts.task_type not in ({{ unirank.unirank_quoted(no_source_item) }})
        )
        {% endif -%}
        {% if no_engaged -%}
        and engaged_pairs.item_id is null
        {%- endif %}
),

candidates_capped as (
    select
        *,
        row_number() over (
            partition by request_id
            order by source_priority, source_rank, item_id
        ) as candidate_rank
    from candidates_filtered
),

final as (
    select
        serving_contexts.request_id,
        serving_contexts.task_type,
        serving_contexts.context_key,
        candidates_capped.item_id,
        {% for column in registry.context_columns -%}
        serving_contexts.{{ column.name }},
        {% endfor -%}
        candidates_capped.candidate_source,
        {#- row_number() is a bigint on DuckDB, an int on Spark: the contract says bigint. #}
        cast(candidates_capped.candidate_rank as {{ dbt.type_bigint() }}) as candidate_rank,
        serving_contexts.requested_at
    from candidates_capped
    inner join serving_contexts
        on candidates_capped.request_id = serving_contexts.request_id
    where candidates_capped.candidate_rank <= {{ cap }}
)

select * from final
{% endmacro %}
