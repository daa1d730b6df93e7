{#- The project's item catalogue (registry inputs.items): one row per item with its lower-cased
    title ('' when none), category and available countries ('' when unknown: available
    everywhere). Features and serving read items only through this model. -#}
{%- set registry = unirank_registry() -%}

with

project_items as (
    select * from {{ ref(registry.inputs['items']) }}
),

final as (
    select
        cast(item_id as {{ dbt.type_string() }}) as item_id,
        lower(coalesce(cast(title as {{ dbt.type_string() }}), '')) as title,
        cast(category as {{ dbt.type_string() }}) as category,
        coalesce(cast(available_countries as {{ dbt.type_string() }}), '') as available_countries
    from project_items
)

select * from final
