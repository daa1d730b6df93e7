{#- MovieLens's own feature model: the ratings (0.5-5 stars, every rating, not only the 4+ ones
    unirank's engagement history holds) given strictly before the probe's time - by the user
    (`user_mean_rating`, `user_ratings`) and to the movie (`item_mean_rating`, `item_ratings`).
    One row per probe. A rating at the request's own time - the positive's own rating, for a
    related, category or search request - is not before it and never counts. Computed like
    unirank's built-in features: one window pass over events and probes sorted by time
    (unirank.strictly_before), once per distinct (user, time) and (movie, time). -#}
with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
),

ratings_graded as (
    select * from {{ ref('int_movielens__ratings_graded') }}
),

user_probes as (
    select distinct
        user_id,
        requested_at_us
    from feature_probes
    where user_id <> {{ unirank.sentinel_of('user_id') }}
),

user_events_and_probes as (
    select
        user_id,
        {{ unirank.epoch_microseconds('rated_at') }} as at_us,
        rating,
        1 as is_event
    from ratings_graded
    union all
    select
        user_id,
        requested_at_us as at_us,
        cast(null as {{ unirank.type_double() }}) as rating,
        0 as is_event
    from user_probes
),

user_ratings_counted as (
    select
        user_id,
        at_us,
        is_event,
        sum(is_event) {{ unirank.strictly_before(['user_id']) }} as user_ratings,
        sum(rating) {{ unirank.strictly_before(['user_id']) }} as user_rating_sum
    from user_events_and_probes
),

user_ratings_before as (
    select distinct
        user_id,
        at_us,
        user_ratings,
        user_rating_sum
    from user_ratings_counted
    where is_event = 0
),

item_probes as (
    select distinct
        item_id,
        requested_at_us
    from feature_probes
),

item_events_and_probes as (
    select
        item_id,
        {{ unirank.epoch_microseconds('rated_at') }} as at_us,
        rating,
        1 as is_event
    from ratings_graded
    union all
    select
        item_id,
        requested_at_us as at_us,
        cast(null as {{ unirank.type_double() }}) as rating,
        0 as is_event
    from item_probes
),

item_ratings_counted as (
    select
        item_id,
        at_us,
        is_event,
        sum(is_event) {{ unirank.strictly_before(['item_id']) }} as item_ratings,
        sum(rating) {{ unirank.strictly_before(['item_id']) }} as item_rating_sum
    from item_events_and_probes
),

item_ratings_before as (
    select distinct
        item_id,
        at_us,
        item_ratings,
        item_rating_sum
    from item_ratings_counted
    where is_event = 0
),

final as (
    select
        feature_probes.request_id,
        feature_probes.item_id,
        case
            when coalesce(user_ratings_before.user_ratings, 0) = 0 then -1.0
            else user_ratings_before.user_rating_sum / user_ratings_before.user_ratings
        end as user_mean_rating,
        coalesce(user_ratings_before.user_ratings, 0) as user_ratings,
        case
            when coalesce(item_ratings_before.item_ratings, 0) = 0 then -1.0
            else item_ratings_before.item_rating_sum / item_ratings_before.item_ratings
        end as item_mean_rating,
        coalesce(item_ratings_before.item_ratings, 0) as item_ratings
    from feature_probes
    left join user_ratings_before
        on feature_probes.user_id = user_ratings_before.user_id
        and feature_probes.requested_at_us = user_ratings_before.at_us
    left join item_ratings_before
        on feature_probes.item_id = item_ratings_before.item_id
        and feature_probes.requested_at_us = item_ratings_before.at_us
)

select * from final
