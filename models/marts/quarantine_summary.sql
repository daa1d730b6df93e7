{#- One row per source table: rows read, rows quarantined and their share. A test fails the build
    when a share exceeds vars.quarantine_max_share. -#}
with

quarantined_rows as (
    select * from {{ ref('quarantined_rows') }}
),

source_totals as (
    {% for table in ['requests', 'impressions', 'engagements', 'items', 'users'] %}
    select '{{ table }}' as source_table, count(*) as total_rows from {{ ref('stg_demo__' ~ table) }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

quarantined_per_table as (
    select
        source_table,
        count(*) as quarantined_rows
    from quarantined_rows
    group by source_table
),

final as (
    select
        source_totals.source_table,
        source_totals.total_rows,
        coalesce(quarantined_per_table.quarantined_rows, 0) as quarantined_rows,
        case
            when source_totals.total_rows = 0 then 0.0
            else coalesce(quarantined_per_table.quarantined_rows, 0)
                / cast(source_totals.total_rows as {{ type_double() }})
        end as quarantined_share
    from source_totals
    left join quarantined_per_table
        on source_totals.source_table = quarantined_per_table.source_table
)

select * from final
