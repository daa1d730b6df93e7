{#- The ranking mart Python trains and evaluates on: one row per request and candidate item, with
    the graded label, the split, every unified context column (sentinel, never NULL) and every
    feature with its documented default where it does not apply. -#}
{%- set registry = unirank_registry() -%}

with

labels_unioned as (
    select * from {{ ref('int_labels_unioned') }}
),

item_popularity as (
    select * from {{ ref('int_features__item_popularity') }}
),

user_history as (
    select * from {{ ref('int_features__user_history') }}
),

coengagement as (
    select * from {{ ref('int_features__coengagement') }}
),

category_rank as (
    select * from {{ ref('int_features__category_rank') }}
),

context_match as (
    select * from {{ ref('int_features__context_match') }}
),

final as (
    select
        labels_unioned.request_id,
        labels_unioned.item_id,
        labels_unioned.task_type,
        {% for column in registry.context_columns -%}
        labels_unioned.{{ column.name }},
        {% endfor -%}
        coalesce(context_match.item_category, {{ sentinel_of('category') }}) as item_category,
        labels_unioned.split,
        labels_unioned.label,
        cast(coalesce(item_popularity.item_engagements, 0) as {{ dbt.type_bigint() }}) as item_engagements,
        cast(coalesce(item_popularity.item_engagements_7d, 0) as {{ dbt.type_bigint() }}) as item_engagements_7d,
        cast(coalesce(item_popularity.item_canvas_engagements, 0) as {{ dbt.type_bigint() }}) as item_canvas_engagements,
        cast(coalesce(category_rank.item_category_rank_pct, 1.0) as {{ type_double() }}) as item_category_rank_pct,
        cast(coalesce(user_history.user_engagements, 0) as {{ dbt.type_bigint() }}) as user_engagements,
        cast(coalesce(user_history.user_category_engagements, 0) as {{ dbt.type_bigint() }}) as user_category_engagements,
        cast(coalesce(user_history.user_category_affinity, 0.0) as {{ type_double() }}) as user_category_affinity,
        cast(coalesce(user_history.user_item_engagements, 0) as {{ dbt.type_bigint() }}) as user_item_engagements,
        cast(coalesce(context_match.query_title_match, -1.0) as {{ type_double() }}) as query_title_match,
        cast(coalesce(coengagement.source_coengagement, -1) as {{ dbt.type_bigint() }}) as source_coengagement,
        cast(coalesce(context_match.source_category_match, -1) as {{ dbt.type_int() }}) as source_category_match,
        cast(coalesce(context_match.category_match, -1) as {{ dbt.type_int() }}) as category_match,
        cast(coalesce(context_match.is_available_in_country, -1) as {{ dbt.type_int() }}) as is_available_in_country,
        labels_unioned.requested_at
    from labels_unioned
    left join item_popularity
        on labels_unioned.request_id = item_popularity.request_id
        and labels_unioned.item_id = item_popularity.item_id
    left join user_history
        on labels_unioned.request_id = user_history.request_id
        and labels_unioned.item_id = user_history.item_id
    left join coengagement
        on labels_unioned.request_id = coengagement.request_id
        and labels_unioned.item_id = coengagement.item_id
    left join category_rank
        on labels_unioned.request_id = category_rank.request_id
        and labels_unioned.item_id = category_rank.item_id
    left join context_match
        on labels_unioned.request_id = context_match.request_id
        and labels_unioned.item_id = context_match.item_id
)

select * from final
