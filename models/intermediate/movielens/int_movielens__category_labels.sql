{#- MovieLens category (a genre page): one request per highly rated movie, the page being the
    movie's category, asked when it was rated. Positive: the movie (graded 1 or 2); negatives:
    sampled from the same category (pool <category>, never a movie the user likes at or after the request). -#}
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

negative_requests as (
    select
        request_id,
        category as pool_key,
        user_id as exclusion_key,
        requested_at,
        cast(null as {{ dbt.type_string() }}) as excluded_item_id
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
        requests.category,
        requests.user_id,
        candidates.label,
        requests.requested_at
    from candidates
    inner join requests
        on candidates.request_id = requests.request_id
)

select * from final
