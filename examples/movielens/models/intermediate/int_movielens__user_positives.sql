{#- Each user's positives on any canvas (a movie rated 4+ stars or tagged) with the time of the
    last one: a movie is never drawn as that user's negative for a request at or before it (it
    would be a false negative). Earlier positives stay eligible - the features see them - and a
    movie rated below 4 is always eligible: the user watched it and did not like it. -#}
with

engagement_history as (
    select * from {{ ref('int_movielens__engagement_history') }}
),

final as (
    select
        user_id as exclusion_key,
        item_id,
        max(engaged_at) as last_engaged_at
    from engagement_history
    group by user_id, item_id
)

select * from final
