{#- One row per source table of the project: rows read, rows quarantined and their share.
    A test fails the build when a share exceeds vars.quarantine_max_share. -#}
with

source_rows as (
    select * from {{ project_source_rows() }} as project_source_rows
),

rows_counted as (
    select
        source_table,
        count(*) as total_rows,
        count(quarantine_reason) as quarantined_rows
    from source_rows
    group by source_table
),

final as (
    select
        source_table,
        total_rows,
        quarantined_rows,
        case
            when total_rows = 0 then 0.0
            else quarantined_rows / cast(total_rows as {{ type_double() }})
        end as quarantined_share
    from rows_counted
)

select * from final
