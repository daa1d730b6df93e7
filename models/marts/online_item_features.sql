{#- What online scoring (ranker.online) reads for the features that depend only on the candidate
    item, its canvas and the time: one row per (served canvas, catalogue item) with every
    registered feature column, computed by the feature models themselves on the `latest` probes
    (int_feature_probes) at the serving clock - the same SQL as training and batch serving.
    Copied into every published recommendations cache. -#}
{%- set registry = unirank_registry() -%}

with

probe_features as (
    select * from {{ ref('int_probe_features') }}
    where probe_kind = 'latest'
),

final as (
    select
        task_type,
        item_id,
        {% for column in registry.feature_columns -%}
        {{ column.name }},
        {% endfor -%}
        requested_at as served_as_of
    from probe_features
)

select * from final
