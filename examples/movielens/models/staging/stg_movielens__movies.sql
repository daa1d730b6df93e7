with

source as (
    select * from {{ source('movielens', 'movies') }}
),

renamed as (
    select
        cast(movieId as {{ dbt.type_string() }}) as item_id,
        cast(title as {{ dbt.type_string() }}) as title,
        cast(genres as {{ dbt.type_string() }}) as genres
    from source
),

final as (
    select
        *,
        case
            when item_id is null then 'null item_id'
            when trim(coalesce(genres, '')) = '' then 'null genres'
        end as quarantine_reason
    from renamed
)

select * from final
