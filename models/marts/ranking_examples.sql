{#- The ranking mart Python trains and evaluates on: one row per request and candidate item, with
    the graded label, the split, every unified context column (sentinel, never NULL) and every
    registered feature column with its declared default where it does not apply (assembled in
    int_probe_features, the same features serving_candidates carries). Its columns follow the
    registry; the test registry_columns checks them. -#}
{%- set registry = unirank_registry() -%}

with

labels_unioned as (
    select * from {{ ref('int_labels_unioned') }}
),

probe_features as (
    select * from {{ ref('int_probe_features') }}
    where probe_kind = 'train'
),

final as (
    select
        labels_unioned.request_id,
        labels_unioned.item_id,
        labels_unioned.task_type,
        {% for column in registry.context_names -%}
        labels_unioned.{{ column }},
        {% endfor -%}
        labels_unioned.split,
        labels_unioned.label,
        {% for column in registry.feature_columns -%}
        probe_features.{{ column.name }},
        {% endfor -%}
        labels_unioned.requested_at
    from labels_unioned
    inner join probe_features
        on labels_unioned.request_id = probe_features.request_id
        and labels_unioned.item_id = probe_features.item_id
)

select * from final
