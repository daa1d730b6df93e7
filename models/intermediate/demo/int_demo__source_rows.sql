{#- The demo's part of the dataset contract for bad input: one row per raw source row, with its
    table, a row key and the quarantine reason (NULL when the row is fine). `quarantined_rows` keeps
    the rows with a reason; `quarantine_summary` counts them against each table's total. -#}
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
    union all
    select
        'impressions' as source_table,
        {{ dbt.concat(["coalesce(request_id, '')", "'/'", "coalesce(item_id, '')"]) }} as row_key,
        quarantine_reason
    from impressions_checked
    union all
    select
        'engagements' as source_table,
        {{ dbt.concat(["coalesce(request_id, '')", "'/'", "coalesce(item_id, '')"]) }} as row_key,
        quarantine_reason
    from engagements
    union all
    select
        'items' as source_table,
        coalesce(item_id, '') as row_key,
        quarantine_reason
    from items
    union all
    select
        'users' as source_table,
        coalesce(user_id, '') as row_key,
        quarantine_reason
    from users
)

select * from final
