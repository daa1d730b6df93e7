{% macro dataset_ref(entity) %}
  {#- The selected dataset's model for one part of the dataset contract, by naming convention:
      int_<dataset>__<entity> (items, engagement_history, source_rows). The generic models that
      read a dataset go through this, so nothing downstream names a dataset. -#}
  {%- set entities = ['items', 'engagement_history', 'source_rows'] -%}
  {%- if entity not in entities -%}
    {{ exceptions.raise_compiler_error("dataset_ref: unknown entity '" ~ entity ~ "'; use one of " ~ entities ~ ".") }}
  {%- endif -%}
  {{ return(ref('int_' ~ var('dataset', 'demo') ~ '__' ~ entity)) }}
{% endmacro %}
