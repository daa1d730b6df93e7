{#- MovieLens related ("more like this" under the movie just liked): one request per highly rated
    movie that has an earlier highly rated movie from the same user, asked when it was rated.
    Source item: the user's previous highly rated movie; positive: this movie (graded 1 or 2);
    negatives: sampled (pool __all__, never a movie the user likes at or after the request, never the source). -#}
{%- set sampling = registry_var('negative_sampling', {}) -%}
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

negative_requests as (
    select
        request_id,
        '__all__' as pool_key,
        user_id as exclusion_key,
        requested_at,
        source_item_id as excluded_item_id
    from requests
),

negatives as (
    {{ sampled_negatives('negative_requests', 'negative_pool', 'user_positives', sampling.get('negatives_per_request', 20), sampling.get('seed', 0)) }}
),

candidates as (
    select request_id, item_id, grade as label from requests
    union all
    select request_id, item_id, 0 as label from negatives
),

final as (
    select
        candidates.request_id,
        candidates.item_id,
        requests.source_item_id,
        requests.user_id,
        candidates.label,
        requests.requested_at
    from candidates
    inner join requests
        on candidates.request_id = requests.request_id
)

select * from final
