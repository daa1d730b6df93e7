{#- One row per probe (training example or serving candidate) with every feature and its
    documented default where it does not apply: the one place features are assembled, read by both
    ranking_examples (training) and serving_candidates (serving). -#}
with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
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
        feature_probes.request_id,
        feature_probes.item_id,
        feature_probes.is_serving,
        coalesce(context_match.item_category, {{ sentinel_of('category') }}) as item_category,
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
        cast(coalesce(context_match.is_available_in_country, -1) as {{ dbt.type_int() }}) as is_available_in_country
    from feature_probes
    left join item_popularity
        on feature_probes.request_id = item_popularity.request_id
        and feature_probes.item_id = item_popularity.item_id
    left join user_history
        on feature_probes.request_id = user_history.request_id
        and feature_probes.item_id = user_history.item_id
    left join coengagement
        on feature_probes.request_id = coengagement.request_id
        and feature_probes.item_id = coengagement.item_id
    left join category_rank
        on feature_probes.request_id = category_rank.request_id
        and feature_probes.item_id = category_rank.item_id
    left join context_match
        on feature_probes.request_id = context_match.request_id
        and feature_probes.item_id = context_match.item_id
)

select * from final
