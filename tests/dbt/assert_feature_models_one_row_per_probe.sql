{#- Every registered feature model (registry `features`, built-in or the project's own) has at
    most one row per probe (request_id, item_id): the assembly joins each on that key, so a
    second row would duplicate a training example. One row per model with a duplicated key. -#}
{%- set registry = unirank_registry() -%}
{% for feature in registry.feature_models %}
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
{% if not loop.last %}union all{% endif %}
{% endfor %}
