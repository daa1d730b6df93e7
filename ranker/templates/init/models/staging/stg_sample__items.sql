{#- Staging: one row per item. Registry inputs.items - unirank's item contract:
      item_id              the id the logs use
      title                text ('' when none): the search features match query words in it
      category             one category per item: category features and candidate sources
      available_countries  '|'-separated countries; '' or NULL = available everywhere -#}
with

source as (
    select * from {{ ref('sample_items') }}
),

final as (
    select
        cast(item_id as varchar) as item_id,
        coalesce(cast(title as varchar), '') as title,
        cast(category as varchar) as category,
        coalesce(cast(available_countries as varchar), '') as available_countries
    from source
    where item_id is not null
)

select * from final
