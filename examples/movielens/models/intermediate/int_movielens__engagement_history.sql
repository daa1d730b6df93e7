{#- MovieLens's engagement history (dataset contract): every positive rating (4 stars or more) and
    every tag application, at its time. Ratings are not logged on a canvas (task_type NULL: they
    count for every canvas); a tag is a search for that movie (task_type search). -#}
with

ratings_graded as (
    select * from {{ ref('int_movielens__ratings_graded') }}
    where grade > 0
),

tag_applications as (
    select * from {{ ref('int_movielens__tag_applications') }}
),

final as (
    select
        {{ dbt.concat(["'ml-rating|'", 'user_id', "'|'", 'item_id']) }} as request_id,
        item_id,
        cast(null as {{ dbt.type_string() }}) as task_type,
        user_id,
        item_category,
        grade,
        rated_at as engaged_at
    from ratings_graded
    union all
    select
        {{ dbt.concat(["'ml-tag|'", 'user_id', "'|'", 'item_id', "'|'", 'query_text']) }} as request_id,
        item_id,
        'search' as task_type,
        user_id,
        item_category,
        1 as grade,
        tagged_at as engaged_at
    from tag_applications
)

select * from final
