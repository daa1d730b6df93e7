{#- Every registered feature model (registry `features`, built-in or the project's own) has at
    most one row per probe (request_id, item_id): the assembly left-joins each on that key, so a
    second row would duplicate a training example. Checked for all of them at once and cheaply -
    int_probe_features has exactly one row per probe of int_feature_probes - and, to name the
    culprit, model by model for the project's own feature models (the built-in ones are unique
    by construction). One row per problem. -#}
{%- set registry = unirank_registry() -%}
{%- set own = registry.feature_models | rejectattr('builtin') | list -%}

with

counts as (
    select
        (select count(*) from {{ ref('int_probe_features') }}) as assembled,
        (select count(*) from {{ ref('int_feature_probes') }}) as probes
),

problems as (
    select
        'int_probe_features' as feature_model,
        cast(null as {{ dbt.type_string() }}) as example_request_id,
        assembled - probes as duplicated_probes
    from counts
    where assembled <> probes
    {% for feature in own %}
    union all
    select
        '{{ feature.model }}' as feature_model,
        min(request_id) as example_request_id,
        count(*) as duplicated_probes
    from (
        select
            request_id,
            item_id
        from {{ ref(feature.model) }}
        group by request_id, item_id
        having count(*) > 1
    ) as duplicated
    having count(*) > 0
    {% endfor %}
)

select * from problems
