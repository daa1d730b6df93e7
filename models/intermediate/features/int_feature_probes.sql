{#- Every (request, candidate item) the feature models compute features for: the training
    examples (int_labels_unioned, at their request time) and the serving candidates
    (int_serving_candidates, at the serving clock). One feature implementation serves both, so
    training and serving cannot drift apart. A probe's features use only events strictly before
    `requested_at`. -#}
with

labels_unioned as (
    select * from {{ ref('int_labels_unioned') }}
),

serving_candidates as (
    select * from {{ ref('int_serving_candidates') }}
),

probes_unioned as (
    select
        request_id,
        task_type,
        item_id,
        user_id,
        country,
        source_item_id,
        query_text,
        category,
        false as is_serving,
        requested_at
    from labels_unioned
    union all
    select
        request_id,
        task_type,
        item_id,
        user_id,
        country,
        source_item_id,
        query_text,
        category,
        true as is_serving,
        requested_at
    from serving_candidates
),

final as (
    select
        *,
        {{ epoch_microseconds('requested_at') }} as requested_at_us
    from probes_unioned
)

select * from final
