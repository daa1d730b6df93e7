{% macro assembled_features() %}
  {#- The body of int_probe_features: one row per probe with every registered feature column,
      read from its feature model (left join on request_id and item_id), cast to its declared
      type, with its declared default where the model has no row, no value, or the probe's
      canvas is not one the feature is meant for. -#}
  {%- set registry = unirank.unirank_registry() -%}

with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
),

{% for feature in registry.feature_models %}
{{ feature.model }} as (
    select * from {{ ref(feature.model) }}
),
{% endfor %}

final as (
    select
        feature_probes.request_id,
        feature_probes.item_id,
        feature_probes.task_type,
        feature_probes.probe_kind,
        {% for feature in registry.feature_models -%}
        {%- for column in feature.columns -%}
        {%- set default = unirank.unirank_literal(column.default, column.type) -%}
        {%- set value = 'cast(coalesce(' ~ feature.model ~ '.' ~ column.name ~ ', ' ~ default ~ ') as ' ~ unirank.unirank_sql_type(column.type) ~ ')' -%}
        {%- if feature.canvases is not none %}
        case
            when feature_probes.task_type in ({{ unirank.unirank_quoted(feature.canvases) }}) then {{ value }}
            else {{ default }}
        end as {{ column.name }},
        {%- else %}
        {{ value }} as {{ column.name }},
        {%- endif %}
        {%- endfor %}
        {%- endfor %}
        feature_probes.is_serving,
        feature_probes.requested_at
    from feature_probes
    {% for feature in registry.feature_models -%}
    left join {{ feature.model }}
        on feature_probes.request_id = {{ feature.model }}.request_id
        and feature_probes.item_id = {{ feature.model }}.item_id
    {% endfor %}
)

select * from final
{% endmacro %}
