{% macro feature_columns(relation) %}
  {#- The feature columns of int_probe_features (every column but the probe keys), read from the
      built relation, so marts list features without restating them. Empty while parsing. -#}
  {%- if not execute -%}
    {{ return([]) }}
  {%- endif -%}
  {%- set keys = ['request_id', 'item_id', 'is_serving', 'item_category'] -%}
  {%- set columns = adapter.get_columns_in_relation(relation) -%}
  {%- if columns | length == 0 -%}
    {#- not built yet (e.g. `dbt compile` on an empty warehouse): the mart's contract still
        guards `dbt build`, which builds int_probe_features first. -#}
    {% do log("feature_columns: " ~ relation ~ " is not built yet; compiling without feature columns", info=false) %}
  {%- endif -%}
  {{ return(columns | map(attribute='name') | reject('in', keys) | list) }}
{% endmacro %}
