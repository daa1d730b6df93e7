{#- One row per (movie, genre): the pipe-separated genres of the catalogue, split. -#}
with

movies as (
    select * from {{ ref('stg_movielens__movies') }}
    where quarantine_reason is null
),

genres_split as (
    {#- one split_part per position with a literal part number: portable to engines that build
        split_part from array indexing -#}
    {% for n in range(1, 11) %}
    select
        item_id,
        trim({{ dbt.split_part('genres', "'|'", n) }}) as genre
    from movies
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

final as (
    select distinct
        item_id,
        genre
    from genres_split
    where genre is not null
        and genre <> ''
)

select * from final
