{#- What batch scoring reads: one row per serving context and candidate item, with the context,
    the first-stage source that found the item, and the SAME registered features as
    ranking_examples (int_probe_features) evaluated at the serving clock. Its columns follow the
    registry; the test registry_columns checks them. -#}
{%- set registry = unirank_registry() -%}

with

serving_candidates as (
    select * from {{ ref('int_serving_candidates') }}
),

probe_features as (
    select * from {{ ref('int_probe_features') }}
    where probe_kind = 'serve'
),

final as (
    select
        serving_candidates.request_id,
        serving_candidates.item_id,
        serving_candidates.task_type,
        serving_candidates.context_key,
        {% for column in registry.context_names -%}
        serving_candidates.{{ column }},
        {% endfor -%}
        serving_candidates.candidate_source,
        serving_candidates.candidate_rank,
        {% for column in registry.feature_columns -%}
        probe_features.{{ column.name }},
        {% endfor -%}
        serving_candidates.requested_at as served_as_of,
        cast('{{ invocation_id }}' as {{ dbt.type_string() }}) as dbt_invocation_id
    from serving_candidates
    inner join probe_features
        on serving_candidates.request_id = probe_features.request_id
        and serving_candidates.item_id = probe_features.item_id
)

-- Stored context by context (in the order scoring numbers contexts): batch scoring then reads
-- each context's candidates as one run of rows, looks its number up once per run and cuts it to
-- its top K within the batch. Any order gives the same cache, only slower.
select * from final
order by task_type, context_key
