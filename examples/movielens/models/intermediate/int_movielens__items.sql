{#- The MovieLens catalogue in the dataset contract: one row per movie with its lower-cased title,
    its category - the most specific of its genres (the one with the fewest movies; ties by name),
    since a movie lists several and a category page needs one - and no country data. -#}
with

movies as (
    select * from {{ ref('stg_movielens__movies') }}
    where quarantine_reason is null
),

item_genres as (
    select * from {{ ref('int_movielens__item_genres') }}
),

genre_sizes as (
    select
        genre,
        count(*) as movies_in_genre
    from item_genres
    group by genre
),

genres_ranked as (
    select
        item_genres.item_id,
        item_genres.genre,
        row_number() over (
            partition by item_genres.item_id
            order by genre_sizes.movies_in_genre, item_genres.genre
        ) as specificity_rank
    from item_genres
    inner join genre_sizes
        on item_genres.genre = genre_sizes.genre
),

final as (
    select
        movies.item_id,
        lower(coalesce(movies.title, '')) as title,
        coalesce(genres_ranked.genre, '(no genres listed)') as category,
        '' as available_countries
    from movies
    left join genres_ranked
        on movies.item_id = genres_ranked.item_id
        and genres_ranked.specificity_rank = 1
)

select * from final
