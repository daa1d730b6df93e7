{% macro feature_twin_differences(twin_kind) %}
  {#- The generic feature checks: for every registered feature column, the probes whose value
      differs from their twin's in int_probe_features (int_feature_probes makes the twins of
      one training request in feature_checks.every_nth_request). One row per (feature model,
      column) that differs, with how many probes and one example.
        check_past   the twin is one microsecond earlier: a feature computed strictly before the
                     probe's time cannot change (unless it is a calendar snapshot and the probe
                     sits exactly at midnight, which is skipped).
        check_serve  the twin is flagged is_serving: a feature cannot treat training and serving
                     probes differently. -#}
  {%- set registry = unirank.unirank_registry() -%}
  {%- set prefix = {'check_past': 'check|past|', 'check_serve': 'check|serve|'}[twin_kind] -%}
  {%- if registry.feature_checks.every_nth_request == 0 -%}
    select cast(null as {{ dbt.type_string() }}) as feature_model where 1 = 0
  {%- else -%}
  with

  probe_features as (
      select * from {{ ref('int_probe_features') }}
  ),

  twins as (
      select * from probe_features where probe_kind = '{{ twin_kind }}'
  ),

  originals as (
      select * from probe_features
      where probe_kind = 'train'
      {% if twin_kind == 'check_past' -%}
          and requested_at <> {{ dbt.date_trunc('day', 'requested_at') }}
      {%- endif %}
  ),

  pairs as (
      select
          originals.request_id,
          originals.item_id,
          {% for column in registry.feature_columns -%}
          originals.{{ column.name }} as {{ column.name }}__probe,
          twins.{{ column.name }} as {{ column.name }}__twin{% if not loop.last %},{% endif %}
          {% endfor %}
      from originals
      inner join twins
          on twins.request_id = {{ dbt.concat(["'" ~ prefix ~ "'", 'originals.request_id']) }}
          and twins.item_id = originals.item_id
  ),

  differences as (
      {% for feature in registry.feature_models %}
      {%- for column in feature.columns %}
      select
          '{{ feature.model }}' as feature_model,
          '{{ column.name }}' as feature,
          request_id,
          item_id,
          cast({{ column.name }}__probe as {{ dbt.type_string() }}) as probe_value,
          cast({{ column.name }}__twin as {{ dbt.type_string() }}) as twin_value
      from pairs
      {% if column.type == 'string' -%}
      where {{ column.name }}__probe <> {{ column.name }}__twin
      {%- else -%}
      where abs({{ column.name }}__probe - {{ column.name }}__twin) > 1e-9 * (1 + abs({{ column.name }}__probe))
      {%- endif %}
      {% if not loop.last %}union all{% endif %}
      {%- endfor %}
      {% if not loop.last %}union all{% endif %}
      {% endfor %}
  )

  select
      feature_model,
      feature,
      count(*) as differing_probes,
      min({{ dbt.concat(['request_id', "' / '", 'item_id', "': '", 'probe_value', "' vs '", 'twin_value']) }}) as example
  from differences
  group by feature_model, feature
  {%- endif %}
{% endmacro %}
