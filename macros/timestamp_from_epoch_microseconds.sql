{% macro timestamp_from_epoch_microseconds(expression) %}
  {#- A UTC timestamp (without time zone) from microseconds since 1970 (dispatched): the inverse
      of epoch_microseconds. -#}
  {{ return(adapter.dispatch('timestamp_from_epoch_microseconds', 'unirank')(expression)) }}
{% endmacro %}

{% macro default__timestamp_from_epoch_microseconds(expression) %}
  make_timestamp(cast({{ expression }} as {{ dbt.type_bigint() }}))
{% endmacro %}

{% macro spark__timestamp_from_epoch_microseconds(expression) %}
  {#- A `timestamp`, like every other timestamp of the project on Spark: with the session time
      zone UTC (profiles.yml) it reads as DuckDB's naive timestamp. `timestamp_ntz` would not
      match the marts' contracts (data_type timestamp). -#}
  timestamp_micros(cast({{ expression }} as bigint))
{% endmacro %}
