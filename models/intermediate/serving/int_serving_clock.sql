{#- The time serving is evaluated at ("now"): vars.serving.as_of, or one second after the last
    engagement in the history. One row, with the start of the lookback window. -#}
{%- set serving = unirank_registry().serving -%}
{%- set lookback_days = serving.get('lookback_days', 28) -%}

with

engagement_history as (
    select * from {{ ref('int_engagement_history') }}
),

clock as (
    {% if serving.get('as_of') -%}
    select cast('{{ serving.as_of }}' as {{ dbt.type_timestamp() }}) as as_of
    {%- else -%}
    select cast({{ dbt.dateadd('second', 1, 'max(engaged_at)') }} as {{ dbt.type_timestamp() }}) as as_of
    from engagement_history
    {%- endif %}
),

final as (
    select
        as_of,
        cast({{ dbt.dateadd('day', -lookback_days, 'as_of') }} as {{ dbt.type_timestamp() }}) as lookback_from
    from clock
)

select * from final
