{#- MovieLens's own feature model: the movie's release year, read from its title ("Heat (1995)"),
    and the years between it and the request. One row per probe with a dated movie; a static
    attribute, so nothing to cut at the probe's time (years_since_release changes only at New
    Year's midnight, which the point-in-time check skips). -#}
with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
),

movies as (
    select * from {{ ref('stg_movielens__movies') }}
    where quarantine_reason is null
),

movie_years as (
    select
        item_id,
        cast(nullif(regexp_extract(trim(title), '[(]([0-9]{4})[)]$', 1), '') as {{ dbt.type_int() }}) as release_year
    from movies
),

final as (
    select
        feature_probes.request_id,
        feature_probes.item_id,
        movie_years.release_year,
        cast(extract(year from feature_probes.requested_at) as {{ dbt.type_int() }})
            - movie_years.release_year as years_since_release
    from feature_probes
    inner join movie_years
        on feature_probes.item_id = movie_years.item_id
    where movie_years.release_year is not null
)

select * from final
