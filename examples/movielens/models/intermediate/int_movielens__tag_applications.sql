{#- One row per distinct (user, movie, query) tag application, the query being the trimmed,
    lower-cased tag, at its first time: a search a user typed and the movie it was about. -#}
with

tags as (
    select * from {{ ref('stg_movielens__tags') }}
    where quarantine_reason is null
),

items as (
    select * from {{ ref('int_movielens__items') }}
),

final as (
    select
        tags.user_id,
        tags.item_id,
        lower(trim(tags.tag)) as query_text,
        min(items.category) as item_category,
        min(tags.tagged_at) as tagged_at
    from tags
    inner join items
        on tags.item_id = items.item_id
    group by tags.user_id, tags.item_id, lower(trim(tags.tag))
)

select * from final
