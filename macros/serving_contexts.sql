{% macro serving_contexts() %}
  {#- The body of int_serving_contexts: per registry canvas with a `serving` entry, the contexts
      to precompute - values of its serving key seen in at least `min_requests` requests over the
      lookback window - with the `carry` columns from the key's latest request, the columns its
      `impute` rules fill (as of the serving clock) and every other context column at its
      sentinel. -#}
  {%- set registry = unirank.unirank_registry() -%}
  {%- set canvases = registry.canvases | selectattr('serving') | list -%}
  {%- if canvases | length == 0 -%}
    {#- No canvas is served: an empty, typed relation, so training-only projects still build. -#}
    {{ return(unirank.empty_serving_contexts(registry)) }}
  {%- endif -%}

with

serving_clock as (
    select * from {{ ref('int_serving_clock') }}
),

{% for canvas in canvases %}
{%- set key = canvas.serving.key -%}
{%- set carry = canvas.serving.get('carry', []) -%}
{{ canvas.name }}_requests as (
    select distinct
        labels.request_id,
        labels.{{ key }} as context_key,
        {% for column in carry %}labels.{{ column }},
        {% endfor -%}
        labels.requested_at
    from {{ ref(canvas.label_model) }} as labels
    cross join serving_clock
    where labels.{{ key }} is not null
        and labels.requested_at >= serving_clock.lookback_from
        and labels.requested_at < serving_clock.as_of
),

{{ canvas.name }}_contexts as (
    select
        context_key,
        {% for column in carry %}{{ column }},
        {% endfor -%}
        row_number() over (partition by context_key order by requested_at desc, request_id desc) as recency,
        count(*) over (partition by context_key) as n_requests
    from {{ canvas.name }}_requests
),
{% endfor %}

contexts_unioned as (
    {% for canvas in canvases %}
    {%- set key = canvas.serving.key -%}
    {%- set carry = canvas.serving.get('carry', []) -%}
    select
        cast('{{ canvas.name }}' as {{ dbt.type_string() }}) as task_type,
        {{ unirank.sentinel_coalesce('context_key', {'name': key, 'type': 'string', 'sentinel': ''}) }} as context_key,
        {% for column in registry.context_columns -%}
        {% if column.name == key -%}
        {{ unirank.sentinel_coalesce('context_key', column) }} as {{ column.name }},
        {%- elif column.name in carry -%}
        {{ unirank.sentinel_coalesce(column.name, column) }} as {{ column.name }},
        {%- else -%}
        {{ unirank.sentinel_literal(column) }} as {{ column.name }},
        {%- endif %}
        {% endfor -%}
        n_requests
    from {{ canvas.name }}_contexts
    where recency = 1
        and n_requests >= {{ canvas.serving.get('min_requests', 1) }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

contexts_timed as (
    select
        {{ dbt.concat(["'serve|'", 'contexts_unioned.task_type', "'|'", 'contexts_unioned.context_key']) }} as request_id,
        contexts_unioned.*,
        serving_clock.as_of as requested_at
    from contexts_unioned
    cross join serving_clock
    where contexts_unioned.context_key <> ''
),

final as (
    -- a canvas's registry `impute` rules fill context columns it lacks, as in training
    {{ unirank.impute_context('contexts_timed', ['context_key', 'n_requests', 'requested_at']) }}
)

select * from final
{% endmacro %}

{% macro empty_serving_contexts(registry) %}
  {#- int_serving_contexts' columns with no rows (a registry that serves no canvas). -#}
select
    cast(null as {{ dbt.type_string() }}) as request_id,
    cast(null as {{ dbt.type_string() }}) as task_type,
    cast(null as {{ dbt.type_string() }}) as context_key,
    {% for column in registry.context_columns -%}
    {{ unirank.sentinel_literal(column) }} as {{ column.name }},
    {% endfor -%}
    cast(0 as {{ dbt.type_bigint() }}) as n_requests,
    cast(null as {{ dbt.type_timestamp() }}) as requested_at
where 1 = 0
{% endmacro %}
