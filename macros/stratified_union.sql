{% macro stratified_union() %}
  {#- The unified labels: every registry canvas's label model, UNION ALL'd with all context columns
      COALESCEd to their sentinels (or imputed, macro impute_context) and a task_type column,
      then stratified by request (a request's
      candidates are kept or dropped together) and split by request time.

      Selection is deterministic: within a canvas, requests are ordered by md5(request_id || seed)
      (then request_id) and the first `target` are kept, where target follows the strategy:
        traffic  ceil(n_canvas * budget / n_all), at most n_canvas
        equal    floor(budget / n_canvases)
        weights  floor(budget * weight / sum(weights))
      md5 over a string is computed identically by every engine, so every engine keeps the same
      requests.

      Before sampling, each canvas's candidate rules drop rows exactly as serving does:
      `exclude_source_item` the source item as its own candidate, `exclude_engaged` items the
      user engaged with strictly before the request. -#}
  {%- set registry = unirank.unirank_registry() -%}
  {%- set strat = registry.stratification -%}
  {%- set canvases = registry.canvases -%}
  {%- set total_weight = canvases | sum(attribute='weight') -%}
  {%- set no_source_item = [] -%}
  {%- set no_engaged = [] -%}
  {%- for canvas in canvases -%}
    {%- if canvas.exclude_source_item and 'source_item_id' in canvas.context_columns -%}
      {%- do no_source_item.append(canvas.name) -%}
    {%- endif -%}
    {%- if canvas.exclude_engaged and 'user_id' in canvas.context_columns -%}
      {%- do no_engaged.append(canvas.name) -%}
    {%- endif -%}
  {%- endfor -%}

with

{% for canvas in canvases %}
{{ canvas.name }}_labels as (
    select * from {{ ref(canvas.label_model) }}
),
{% endfor %}

labels_given as (
    {% for canvas in canvases %}
    select
        cast(request_id as {{ dbt.type_string() }}) as request_id,
        cast('{{ canvas.name }}' as {{ dbt.type_string() }}) as task_type,
        cast(item_id as {{ dbt.type_string() }}) as item_id,
        {% for column in registry.context_columns -%}
        {% if column.name in canvas.context_columns -%}
        {{ unirank.sentinel_coalesce(column.name, column) }} as {{ column.name }},
        {%- else -%}
        {{ unirank.sentinel_literal(column) }} as {{ column.name }},
        {%- endif %}
        {% endfor -%}
        cast(label as {{ dbt.type_int() }}) as label,
        cast(requested_at as {{ dbt.type_timestamp() }}) as requested_at
    from {{ canvas.name }}_labels
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

labels_unioned as (
    -- a canvas's registry `impute` rules fill context columns it lacks (point-in-time)
    {{ unirank.impute_context('labels_given', ['item_id', 'label', 'requested_at']) }}
),

{% if no_engaged -%}
engagement_history as (
    select * from {{ ref('int_engagement_history') }}
),

first_engagements as (
    select
        user_id,
        item_id,
        min(engaged_at) as first_engaged_at
    from engagement_history
    where user_id is not null
    group by user_id, item_id
),
{%- endif %}

labels_ruled as (
    select labels_unioned.*
    from labels_unioned
    {% if no_engaged -%}
    left join first_engagements
        on labels_unioned.task_type in ({{ unirank.unirank_quoted(no_engaged) }})
        and labels_unioned.user_id = first_engagements.user_id
        and labels_unioned.item_id = first_engagements.item_id
        and first_engagements.first_engaged_at < labels_unioned.requested_at
    {% endif -%}
    where 1 = 1
        {% if no_source_item -%}
        and (
            labels_unioned.task_type not in ({{ unirank.unirank_quoted(no_source_item) }})
            or labels_unioned.item_id <> labels_unioned.source_item_id
        )
        {% endif -%}
        {% if no_engaged -%}
        and first_engagements.item_id is null
        {%- endif %}
),

canvas_weights as (
    {% for canvas in canvases %}
    select
        cast('{{ canvas.name }}' as {{ dbt.type_string() }}) as task_type,
        cast({{ canvas.weight }} as {{ unirank.type_double() }}) as weight
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

requests as (
    select distinct
        task_type,
        request_id
    from labels_ruled
),

requests_per_canvas as (
    select
        task_type,
        count(*) as n_requests
    from requests
    group by task_type
),

canvas_targets as (
    select
        requests_per_canvas.task_type,
        {% if strat.strategy == 'traffic' -%}
        case
            when sum(requests_per_canvas.n_requests) over () <= {{ strat.budget }} then requests_per_canvas.n_requests
            -- ceil(n * budget / total) without float rounding: floor((n * budget + total - 1) / total)
            else cast(floor(
                (requests_per_canvas.n_requests * {{ strat.budget }} + sum(requests_per_canvas.n_requests) over () - 1)
                / cast(sum(requests_per_canvas.n_requests) over () as {{ unirank.type_double() }})
            ) as {{ dbt.type_bigint() }})
        end as target_requests
        {%- elif strat.strategy == 'equal' -%}
        cast(floor({{ strat.budget }} / {{ canvases | length }}.0) as {{ dbt.type_bigint() }}) as target_requests
        {%- else -%}
        cast(floor({{ strat.budget }} * canvas_weights.weight / {{ total_weight }}) as {{ dbt.type_bigint() }}) as target_requests
        {%- endif %}
    from requests_per_canvas
    inner join canvas_weights
        on requests_per_canvas.task_type = canvas_weights.task_type
),

requests_ranked as (
    -- one row per request (not per candidate): the sort is over requests only
    select
        requests.task_type,
        requests.request_id,
        row_number() over (
            partition by requests.task_type
            order by
                {{ dbt.hash(dbt.concat(['requests.request_id', "'|" ~ strat.seed ~ "'"])) }},
                requests.request_id
        ) as request_rank
    from requests
),

requests_kept as (
    select
        requests_ranked.task_type,
        requests_ranked.request_id
    from requests_ranked
    inner join canvas_targets
        on requests_ranked.task_type = canvas_targets.task_type
    where requests_ranked.request_rank <= canvas_targets.target_requests
),

requests_sampled as (
    select labels_ruled.*
    from labels_ruled
    inner join requests_kept
        on labels_ruled.task_type = requests_kept.task_type
        and labels_ruled.request_id = requests_kept.request_id
),

final as (
    select
        request_id,
        task_type,
        item_id,
        {% for column in registry.context_columns -%}
        {{ column.name }},
        {% endfor -%}
        case
            when requested_at < cast('{{ registry.split.valid_from }}' as {{ dbt.type_timestamp() }}) then 'train'
            when requested_at < cast('{{ registry.split.test_from }}' as {{ dbt.type_timestamp() }}) then 'valid'
            else 'test'
        end as split,
        label,
        requested_at
    from requests_sampled
)

select * from final
{% endmacro %}
