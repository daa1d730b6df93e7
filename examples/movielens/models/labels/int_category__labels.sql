{#- MovieLens category (a genre page): one request per highly rated movie, the page being the
    movie's category, asked when it was rated. Positive: the movie (graded 1 or 2); negatives:
    sampled from the same category (pool <category>, never a movie the user likes at or after the request). -#}
with

ratings_graded as (
    select * from {{ ref('int_movielens__ratings_graded') }}
    where grade > 0
),

negative_pool as (
    select * from {{ ref('int_movielens__negative_pool') }}
),

user_positives as (
    select * from {{ ref('int_movielens__user_positives') }}
),

requests as (
    select
        {{ dbt.concat(["'ml-category|'", 'user_id', "'|'", 'item_id']) }} as request_id,
        item_category as category,
        user_id,
        item_id,
        grade,
        rated_at as requested_at
    from ratings_graded
),

positives as (
    select request_id, item_id, grade as label from requests
),

final as (
    {{ unirank.labels_with_sampled_negatives('requests', 'positives', 'negative_pool', 'user_positives', pool_key='category', exclusion_key='user_id', context_columns=['category', 'user_id']) }}
)

select * from final
