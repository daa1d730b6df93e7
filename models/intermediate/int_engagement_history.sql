{#- The project's engagement history (registry inputs.engagements), with each item's category:
    the events point-in-time features and candidate sources look back on. `task_type` is the
    canvas the engagement happened on, or NULL when the log does not say (it then counts for
    every canvas); `user_id` is NULL for an anonymous engagement. -#}
{%- set registry = unirank_registry() -%}

with

project_engagements as (
    select * from {{ ref(registry.inputs.engagements) }}
),

items as (
    select * from {{ ref('int_items') }}
),

final as (
    select
        cast(project_engagements.request_id as {{ dbt.type_string() }}) as request_id,
        cast(project_engagements.item_id as {{ dbt.type_string() }}) as item_id,
        cast(project_engagements.task_type as {{ dbt.type_string() }}) as task_type,
        cast(project_engagements.user_id as {{ dbt.type_string() }}) as user_id,
        items.category as item_category,
        cast(project_engagements.grade as {{ dbt.type_int() }}) as grade,
        cast(project_engagements.engaged_at as {{ dbt.type_timestamp() }}) as engaged_at
    from project_engagements
    left join items
        on cast(project_engagements.item_id as {{ dbt.type_string() }}) = items.item_id
)

select * from final
