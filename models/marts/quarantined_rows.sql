{#- Every source row kept out of the pipeline, with the reason: one row per quarantined raw row of
    the project (registry inputs.source_rows). Nothing bad is dropped silently; `quarantine_summary` counts these
    against the source totals. -#}
with

source_rows as (
    select * from {{ project_source_rows() }} as project_source_rows
),

final as (
    select
        source_table,
        row_key,
        quarantine_reason
    from source_rows
    where quarantine_reason is not null
)

select * from final
