{% macro epoch_microseconds(timestamp) %}
  {#- Microseconds since 1970 as a bigint: an integer time axis for `range ... 1 preceding`
      window frames ("strictly before"), identical on every engine. -#}
  {{ return(adapter.dispatch('epoch_microseconds', 'unirank')(timestamp)) }}
{% endmacro %}

{% macro default__epoch_microseconds(timestamp) %}
  epoch_us({{ timestamp }})
{% endmacro %}

{% macro spark__epoch_microseconds(timestamp) %}
  unix_micros({{ timestamp }})
{% endmacro %}
