{#- The items never drawn as a user's negatives: the user's positives on any canvas over the whole
    log (rated 4 stars or more, or tagged), so a sampled negative is never something the user is
    known to like. Movies rated below 4 stay eligible: the user watched and did not like them. -#}
with

engagement_history as (
    select * from {{ ref('int_movielens__engagement_history') }}
),

final as (
    select distinct
        user_id as exclusion_key,
        item_id
    from engagement_history
)

select * from final
