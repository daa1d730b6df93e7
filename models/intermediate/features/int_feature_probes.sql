{#- Every (request or serving context, candidate item) the feature models compute features for,
    with its canvas, every registry context column and the time it is evaluated at: the training
    examples (int_labels_unioned, at their request time) and the serving candidates
    (int_serving_candidates, at the serving clock). One feature implementation serves both, so
    training and serving cannot drift apart. A probe's features use only events strictly before
    `requested_at`.

    For the generic feature checks, one training request in feature_checks.every_nth_request
    also gets two twins per candidate (probe_kind): `check_past`, the same probe one
    microsecond earlier (a feature that changes has seen the probe's own time), and
    `check_serve`, the same probe flagged as serving (a feature that changes treats training
    and serving differently). tests/dbt/assert_feature_models_*.sql compare them. -#}
{%- set registry = unirank_registry() -%}
{%- set every = registry.feature_checks.every_nth_request -%}

with

labels_unioned as (
    select * from {{ ref('int_labels_unioned') }}
),

serving_candidates as (
    select * from {{ ref('int_serving_candidates') }}
),

probes_unioned as (
    select
        request_id,
        task_type,
        item_id,
        {% for column in registry.context_names -%}
        {{ column }},
        {% endfor -%}
        'train' as probe_kind,
        requested_at
    from labels_unioned
    union all
    select
        request_id,
        task_type,
        item_id,
        {% for column in registry.context_names -%}
        {{ column }},
        {% endfor -%}
        'serve' as probe_kind,
        requested_at
    from serving_candidates
),

probes_timed as (
    select
        *,
        {{ epoch_microseconds('requested_at') }} as requested_at_us
    from probes_unioned
),

{% if every > 0 -%}
twins as (
    select
        {{ dbt.concat(["'check|past|'", 'request_id']) }} as request_id,
        task_type,
        item_id,
        {% for column in registry.context_names -%}
        {{ column }},
        {% endfor -%}
        'check_past' as probe_kind,
        {{ timestamp_from_epoch_microseconds('requested_at_us - 1') }} as requested_at,
        requested_at_us - 1 as requested_at_us
    from probes_timed
    where probe_kind = 'train'
        and {{ hash_bucket('request_id', every) }} = 0
    union all
    select
        {{ dbt.concat(["'check|serve|'", 'request_id']) }} as request_id,
        task_type,
        item_id,
        {% for column in registry.context_names -%}
        {{ column }},
        {% endfor -%}
        'check_serve' as probe_kind,
        requested_at,
        requested_at_us
    from probes_timed
    where probe_kind = 'train'
        and {{ hash_bucket('request_id', every) }} = 0
),
{%- endif %}

final as (
    select
        request_id,
        task_type,
        item_id,
        {% for column in registry.context_names -%}
        {{ column }},
        {% endfor -%}
        probe_kind,
        probe_kind in ('serve', 'check_serve') as is_serving,
        requested_at,
        requested_at_us
    from probes_timed
    {% if every > 0 -%}
    union all
    select
        request_id,
        task_type,
        item_id,
        {% for column in registry.context_names -%}
        {{ column }},
        {% endfor -%}
        probe_kind,
        probe_kind in ('serve', 'check_serve') as is_serving,
        requested_at,
        requested_at_us
    from twins
    {%- endif %}
)

select * from final
