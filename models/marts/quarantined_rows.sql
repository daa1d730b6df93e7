{#- Every source row kept out of the pipeline, with the reason: one row per quarantined raw row.
    Nothing bad is dropped silently; `quarantine_summary` counts these against the source totals. -#}
with

requests as (
    select * from {{ ref('stg_demo__requests') }}
),

impressions as (
    select * from {{ ref('stg_demo__impressions') }}
),

engagements as (
    select * from {{ ref('stg_demo__engagements') }}
),

items as (
    select * from {{ ref('stg_demo__items') }}
),

users as (
    select * from {{ ref('stg_demo__users') }}
),

valid_requests as (
    select request_id from requests where quarantine_reason is null
),

impressions_checked as (
    select
        impressions.request_id,
        impressions.item_id,
        coalesce(
            impressions.quarantine_reason,
            case when valid_requests.request_id is null then 'request missing or quarantined' end
        ) as quarantine_reason
    from impressions
    left join valid_requests
        on impressions.request_id = valid_requests.request_id
),

final as (
    select
        'requests' as source_table,
        coalesce(request_id, '') as row_key,
        quarantine_reason
    from requests
    where quarantine_reason is not null
    union all
    select
        'impressions' as source_table,
        {{ dbt.concat(["coalesce(request_id, '')", "'/'", "coalesce(item_id, '')"]) }} as row_key,
        quarantine_reason
    from impressions_checked
    where quarantine_reason is not null
    union all
    select
        'engagements' as source_table,
        {{ dbt.concat(["coalesce(request_id, '')", "'/'", "coalesce(item_id, '')"]) }} as row_key,
        quarantine_reason
    from engagements
    where quarantine_reason is not null
    union all
    select
        'items' as source_table,
        coalesce(item_id, '') as row_key,
        quarantine_reason
    from items
    where quarantine_reason is not null
    union all
    select
        'users' as source_table,
        coalesce(user_id, '') as row_key,
        quarantine_reason
    from users
    where quarantine_reason is not null
)

select * from final
