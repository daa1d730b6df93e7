{#- Every (request or serving context, candidate item) the feature models compute features for,
    with its canvas, every registry context column and the time it is evaluated at: the training
    examples (int_labels_unioned, at their request time) and the serving candidates
    (int_serving_candidates, at the serving clock). One feature implementation serves both, so
    training and serving cannot drift apart. A probe's features use only events strictly before
    `requested_at`.

    Online scoring (ranker.online) needs the features that depend only on the candidate item,
    its canvas and the time as of the serving clock for any item: one `latest` probe per
    (served canvas, catalogue item) at the serving clock, every context column at its sentinel.
    The marts read them as online_item_features, computed by this same SQL.

    For the generic feature checks, one training request in feature_checks.every_nth_request
    also gets two twins per candidate (probe_kind): `check_past`, the same probe one
    microsecond earlier (a feature that changes has seen the probe's own time), and
    `check_serve`, the same probe flagged as serving (a feature that changes treats training
    and serving differently). tests/dbt/assert_feature_models_*.sql compare them. -#}
{#- The quarantine gate: quarantine_summary's test (no source table past quarantine_max_share)
    runs before this model, and its failure skips the features and the marts: nothing that
    trains or serves is built from data that failed it. -#}
{%- set registry = unirank_registry() -%}
{%- set every = registry.feature_checks.every_nth_request -%}
{%- set columns = ['request_id', 'task_type', 'item_id'] + registry.context_names -%}
{%- set twins = {'check_past': 1, 'check_serve': 0} if every > 0 else {} %}
{%- set served = registry.canvases | selectattr('serving') | map(attribute='name') | list %}
-- depends_on: {{ ref('quarantine_summary') }}
with

labels_unioned as (
    select * from {{ ref('int_labels_unioned') }}
),

serving_candidates as (
    select * from {{ ref('int_serving_candidates') }}
),

items as (
    select * from {{ ref('int_items') }}
),

serving_clock as (
    select * from {{ ref('int_serving_clock') }}
),

latest_probes as (
    {% for canvas in served -%}
    select
        {{ dbt.concat(["'latest|" ~ canvas ~ "|'", 'items.item_id']) }} as request_id,
        cast('{{ canvas }}' as {{ dbt.type_string() }}) as task_type,
        items.item_id,
        {% for column in registry.context_columns -%}
        {{ sentinel_literal(column) }} as {{ column.name }},
        {% endfor -%}
        serving_clock.as_of as requested_at
    from items
    cross join serving_clock
    {% if not loop.last %}union all{% endif %}
    {% endfor -%}
    {%- if served | length == 0 -%}
    select {{ columns | join(', ') }}, requested_at from serving_candidates where 1 = 0
    {%- endif %}
),

probes_unioned as (
    select {{ columns | join(', ') }}, 'train' as probe_kind, requested_at from labels_unioned
    union all
    select {{ columns | join(', ') }}, 'serve' as probe_kind, requested_at from serving_candidates
    union all
    select {{ columns | join(', ') }}, 'latest' as probe_kind, requested_at from latest_probes
),

probes_timed as (
    select
        *,
        {{ epoch_microseconds('requested_at') }} as requested_at_us
    from probes_unioned
),

probes_and_twins as (
    select * from probes_timed
    {% for kind, shift_us in twins.items() %}
    union all
    select
        {{ dbt.concat(["'" ~ kind | replace('_', '|') ~ "|'", 'request_id']) }} as request_id,
        {{ columns[1:] | join(', ') }},
        '{{ kind }}' as probe_kind,
        {{ timestamp_from_epoch_microseconds('requested_at_us - ' ~ shift_us) }} as requested_at,
        requested_at_us - {{ shift_us }} as requested_at_us
    from probes_timed
    where probe_kind = 'train'
        and {{ hash_bucket('request_id', every) }} = 0
    {% endfor %}
),

final as (
    select
        *,
        probe_kind in ('serve', 'check_serve', 'latest') as is_serving
    from probes_and_twins
)

select * from final
