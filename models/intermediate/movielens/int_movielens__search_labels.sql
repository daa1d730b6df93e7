{#- MovieLens search: a tag a user applied to a movie, read as a query typed to find it - one
    request per distinct (user, movie, tag), asked at the first such tag. Positive: the movie
    (grade 1); negatives: sampled (pool __all__, never a movie the user likes at or after the request). -#}
{%- set sampling = registry_var('negative_sampling', {}) -%}
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

negative_requests as (
    select
        request_id,
        '__all__' as pool_key,
        user_id as exclusion_key,
        requested_at,
        cast(null as {{ dbt.type_string() }}) as excluded_item_id
    from requests
),

negatives as (
    {{ sampled_negatives('negative_requests', 'negative_pool', 'user_positives', sampling.get('negatives_per_request', 20), sampling.get('seed', 0)) }}
),

candidates as (
    select request_id, item_id, 1 as label from requests
    union all
    select request_id, item_id, 0 as label from negatives
),

final as (
    select
        candidates.request_id,
        candidates.item_id,
        requests.query_text,
        requests.user_id,
        candidates.label,
        requests.requested_at
    from candidates
    inner join requests
        on candidates.request_id = requests.request_id
)

select * from final
