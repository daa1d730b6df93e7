{#- Home: the user's personalised row. A home request without a known user cannot be personalised
    and is not a home example. -#}
with

impressions_graded as (
    select * from {{ ref('int_demo__impressions_graded') }}
),

final as (
    select
        request_id,
        item_id,
        user_id,
        country,
        device,
        label,
        requested_at
    from impressions_graded
    where canvas = 'home'
        and user_id is not null
)

select * from final
