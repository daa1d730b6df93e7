{#- The demo's part of the dataset contract for bad input: one row per raw source row, with its
    table, a row key and the quarantine reason (NULL when the row is used). `quarantined_rows` keeps
    the rows with a reason; `quarantine_summary` counts them against each table's total, so a row
    label prep cannot use (a request without impressions, an engagement on an item its request
    did not show or outside the attribution window) counts toward the limit like a malformed one.
    The reasons mirror int_demo__impressions_graded's joins; the test
    `demo_source_rows_account_for_every_label` holds the two together. -#}
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
    select
        request_id,
        requested_at
    from requests
    where quarantine_reason is null
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

shown as (
    select
        request_id,
        item_id
    from impressions_checked
    where quarantine_reason is null
),

requests_shown as (
    select distinct request_id from shown
),

requests_checked as (
    select
        requests.request_id,
        coalesce(
            requests.quarantine_reason,
            case when requests_shown.request_id is null then 'request without valid impressions' end
        ) as quarantine_reason
    from requests
    left join requests_shown
        on requests.request_id = requests_shown.request_id
),

engagements_checked as (
    select
        engagements.request_id,
        engagements.item_id,
        coalesce(
            engagements.quarantine_reason,
            case
                when valid_requests.request_id is null then 'request missing or quarantined'
                when shown.item_id is null then 'item not shown in its request'
                when not {{ demo_attributed('engagements.event_at', 'valid_requests.requested_at') }}
                    then 'outside the 24-hour attribution window'
            end
        ) as quarantine_reason
    from engagements
    left join valid_requests
        on engagements.request_id = valid_requests.request_id
    left join shown
        on engagements.request_id = shown.request_id
        and engagements.item_id = shown.item_id
),

final as (
    select
        'requests' as source_table,
        coalesce(request_id, '') as row_key,
        quarantine_reason
    from requests_checked
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
    from engagements_checked
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
