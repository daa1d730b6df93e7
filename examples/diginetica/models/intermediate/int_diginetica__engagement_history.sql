{#- Diginetica's engagement history (dataset contract): one row per (visit, item) viewed or
    purchased, at its first event. The log has no canvas (task_type NULL: counts for every canvas). -#}
with

visit_items as (
    select * from {{ ref('int_diginetica__visit_items') }}
),

final as (
    select
        {{ dbt.concat(["'dg|'", 'visit_id']) }} as request_id,
        item_id,
        cast(null as {{ dbt.type_string() }}) as task_type,
        user_id,
        item_category,
        grade,
        engaged_at
    from visit_items
)

select * from final
