{#- MovieLens related ("more like this" under the movie just liked): one request per highly rated
    movie that has an earlier highly rated movie from the same user, asked when it was rated.
    Source item: the user's previous highly rated movie; positive: this movie (graded 1 or 2);
    negatives: sampled (pool __all__, never a movie the user likes at or after the request, never the source). -#}
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

positives_sequenced as (
    select
        user_id,
        item_id,
        grade,
        rated_at,
        lag(item_id) over (partition by user_id order by rated_at, item_id) as source_item_id
    from ratings_graded
),

requests as (
    select
        {{ dbt.concat(["'ml-related|'", 'user_id', "'|'", 'item_id']) }} as request_id,
        user_id,
        source_item_id,
        item_id,
        grade,
        rated_at as requested_at
    from positives_sequenced
    where source_item_id is not null
),

positives as (
    select request_id, item_id, grade as label from requests
),

final as (
    {{ unirank.labels_with_sampled_negatives('requests', 'positives', 'negative_pool', 'user_positives', pool_key="'__all__'", exclusion_key='user_id', context_columns=['source_item_id', 'user_id'], excluded_item_id='source_item_id') }}
)

select * from final
