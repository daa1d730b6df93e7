{#- MovieLens search: a tag a user applied to a movie, read as a query typed to find it - one
    request per distinct (user, movie, tag), asked at the first such tag. Positive: the movie
    (grade 1); negatives: sampled (pool __all__, never a movie the user likes at or after the request). -#}
with

tag_applications as (
    select * from {{ ref('int_movielens__tag_applications') }}
),

negative_pool as (
    select * from {{ ref('int_movielens__negative_pool') }}
),

user_positives as (
    select * from {{ ref('int_movielens__user_positives') }}
),

requests as (
    select
        {{ dbt.concat(["'ml-search|'", 'user_id', "'|'", 'item_id', "'|'", 'query_text']) }} as request_id,
        query_text,
        user_id,
        item_id,
        tagged_at as requested_at
    from tag_applications
),

positives as (
    select request_id, item_id, 1 as label from requests
),

final as (
    {{ unirank.labels_with_sampled_negatives('requests', 'positives', 'negative_pool', 'user_positives', pool_key="'__all__'", exclusion_key='user_id', context_columns=['query_text', 'user_id']) }}
)

select * from final
