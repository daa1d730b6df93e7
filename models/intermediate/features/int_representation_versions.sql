{#- The versions of the item representations (int_item_representations) and the settings they
    are learned with (registry `representations`): one row per cut. Each version is learned
    from the engagements strictly before its cut, and a probe reads the latest version whose
    cut is at or before its time, so no probe's representation has seen its own time or later.
    The cuts: `train_versions` evenly spaced over the training span (the first engagement to
    split.valid_from, the last at valid_from), and split.test_from, each at the start of its day
    (a probe exactly at a cut would read a newer version than its twin one microsecond earlier;
    the generic point-in-time check skips probes at midnight, as for calendar snapshots), then
    the serving clock itself; with `refresh_days`, also the start of every Nth day with a probe
    (a nightly refresh). Built when the registry lists int_features__representation (its
    properties say so, with int_item_representations). -#}
{%- set registry = unirank_registry() -%}
{%- set settings = registry.representations -%}
{%- set n = settings.train_versions %}
with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
),

engagement_history as (
    select * from {{ ref('int_engagement_history') }}
),

serving_clock as (
    select * from {{ ref('int_serving_clock') }}
),

training_span as (
    select
        {{ epoch_microseconds('min(engaged_at)') }} as first_us,
        {{ epoch_microseconds("cast('" ~ registry.split.valid_from ~ "' as " ~ dbt.type_timestamp() ~ ")") }} as valid_from_us
    from engagement_history
),

cuts as (
    {% for i in range(1, n + 1) -%}
    select
        {{ dbt.date_trunc('day', timestamp_from_epoch_microseconds(
            'first_us + (valid_from_us - first_us) * ' ~ i ~ ' / ' ~ n)) }} as cut_at
    from training_span
    where first_us < valid_from_us
    union all
    {% endfor -%}
    select {{ dbt.date_trunc('day', "cast('" ~ registry.split.test_from ~ "' as " ~ dbt.type_timestamp() ~ ")") }} as cut_at
    union all
    select as_of as cut_at from serving_clock
),

scheduled_cuts as (
    select cut_at from cuts
    {% if settings.refresh_days -%}
    union all
    -- the refresh: the start of every Nth day (from the first cut) that has a probe
    select probe_days.cut_at
    from (
        select distinct {{ dbt.date_trunc('day', 'requested_at') }} as cut_at
        from feature_probes
    ) as probe_days
    cross join (select min(cut_at) as first_cut_at from cuts) as first_cut
    where probe_days.cut_at > first_cut.first_cut_at
        and {{ dbt.datediff('first_cut.first_cut_at', 'probe_days.cut_at', 'day') }} % {{ settings.refresh_days }} = 0
    {%- endif %}
),

cuts_distinct as (
    select distinct cast(cut_at as {{ dbt.type_timestamp() }}) as cut_at
    from scheduled_cuts
),

final as (
    select
        cut_at,
        {{ settings.dimensions }} as dimensions,
        {{ settings.iterations }} as iterations,
        cast({{ settings.regularization }} as {{ type_double() }}) as regularization,
        cast({{ settings.alpha }} as {{ type_double() }}) as alpha,
        {{ settings.seed }} as seed
    from cuts_distinct
)

select * from final
