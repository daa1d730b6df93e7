{#- The ranking mart Python trains and evaluates on: one row per request and candidate item, with
    the graded label, the split, every unified context column (sentinel, never NULL) and every
    feature with its documented default where it does not apply (assembled in int_probe_features,
    the same features serving_candidates carries). -#}
{%- set registry = unirank_registry() -%}
{%- set features = feature_columns(ref('int_probe_features')) -%}

with

labels_unioned as (
    select * from {{ ref('int_labels_unioned') }}
),

probe_features as (
    select * from {{ ref('int_probe_features') }}
    where not is_serving
),

final as (
    select
        labels_unioned.request_id,
        labels_unioned.item_id,
        labels_unioned.task_type,
        {% for column in registry.context_columns -%}
        labels_unioned.{{ column.name }},
        {% endfor -%}
        probe_features.item_category,
        labels_unioned.split,
        labels_unioned.label,
        {% for feature in features -%}
        probe_features.{{ feature }},
        {% endfor -%}
        labels_unioned.requested_at
    from labels_unioned
    inner join probe_features
        on labels_unioned.request_id = probe_features.request_id
        and labels_unioned.item_id = probe_features.item_id
)

select * from final
