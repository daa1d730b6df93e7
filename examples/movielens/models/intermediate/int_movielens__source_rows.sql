{#- MovieLens's part of the dataset contract for bad input: one row per raw row (ratings, tags,
    movies) with its table, a row key and the quarantine reason (NULL when the row is fine). -#}
with

ratings as (
    select * from {{ ref('stg_movielens__ratings') }}
),

tags as (
    select * from {{ ref('stg_movielens__tags') }}
),

movies as (
    select * from {{ ref('stg_movielens__movies') }}
),

final as (
    select
        'ratings' as source_table,
        {{ dbt.concat(["coalesce(user_id, '')", "'/'", "coalesce(item_id, '')"]) }} as row_key,
        quarantine_reason
    from ratings
    union all
    select
        'tags' as source_table,
        {{ dbt.concat(["coalesce(user_id, '')", "'/'", "coalesce(item_id, '')"]) }} as row_key,
        quarantine_reason
    from tags
    union all
    select
        'movies' as source_table,
        coalesce(item_id, '') as row_key,
        quarantine_reason
    from movies
)

select * from final
