{#- Every (request, candidate item) the feature models compute features for, with its context and
    the time it is evaluated at. Features of a probe only use events strictly before `requested_at`. -#}
with

labels_unioned as (
    select * from {{ ref('int_labels_unioned') }}
),

final as (
    select
        request_id,
        task_type,
        item_id,
        user_id,
        country,
        source_item_id,
        query_text,
        category,
        requested_at,
        {{ epoch_microseconds('requested_at') }} as requested_at_us
    from labels_unioned
)

select * from final
