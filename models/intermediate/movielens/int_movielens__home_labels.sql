{#- MovieLens home: a user's rating session (a user-day with at least one rating of 4 stars or
    more), asked at the session's first rating. Positives: that day's highly rated movies, the
    first 10 in time order (graded 1 or 2); negatives: sampled (int_movielens__negative_pool,
    pool __all__, never a movie the user likes at or after the request). -#}
{%- set sampling = registry_var('negative_sampling', {}) -%}
with

ratings_graded as (
    select * from {{ ref('int_movielens__ratings_graded') }}
),

negative_pool as (
    select * from {{ ref('int_movielens__negative_pool') }}
),

user_positives as (
    select * from {{ ref('int_movielens__user_positives') }}
),

ratings_by_day as (
    select
        {{ dbt.concat(["'ml-home|'", 'user_id', "'|'", 'cast(cast(rated_at as date) as ' ~ dbt.type_string() ~ ')']) }} as request_id,
        user_id,
        item_id,
        grade,
        rated_at
    from ratings_graded
),

sessions as (
    select
        request_id,
        user_id,
        min(rated_at) as requested_at
    from ratings_by_day
    group by request_id, user_id
    having max(grade) > 0
),

positives_ranked as (
    select
        request_id,
        item_id,
        grade,
        row_number() over (partition by request_id order by rated_at, item_id) as positive_rank
    from ratings_by_day
    where grade > 0
),

negative_requests as (
    select
        request_id,
        '__all__' as pool_key,
        user_id as exclusion_key,
        requested_at,
        cast(null as {{ dbt.type_string() }}) as excluded_item_id
    from sessions
),

negatives as (
    {{ sampled_negatives('negative_requests', 'negative_pool', 'user_positives', sampling.get('negatives_per_request', 20), sampling.get('seed', 0)) }}
),

candidates as (
    select request_id, item_id, grade as label from positives_ranked where positive_rank <= 10
    union all
    select request_id, item_id, 0 as label from negatives
),

final as (
    select
        candidates.request_id,
        candidates.item_id,
        sessions.user_id,
        candidates.label,
        sessions.requested_at
    from candidates
    inner join sessions
        on candidates.request_id = sessions.request_id
)

select * from final
