{#- MovieLens home: a user's rating session (a user-day with at least one rating of 4 stars or
    more), asked at the session's first rating. Positives: that day's highly rated movies, the
    first 10 in time order (graded 1 or 2); negatives: sampled (int_movielens__negative_pool,
    pool __all__, never a movie the user likes at or after the request). -#}
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

positives as (
    select request_id, item_id, grade as label from positives_ranked where positive_rank <= 10
),

final as (
    {{ unirank.labels_with_sampled_negatives('sessions', 'positives', 'negative_pool', 'user_positives', pool_key="'__all__'", exclusion_key='user_id', context_columns=['user_id']) }}
)

select * from final
