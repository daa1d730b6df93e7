{% macro try_cast(expression, type) %}
  {#- Cast that yields NULL instead of failing on a bad value (dbt.safe_cast is a plain cast on
      some adapters). Staging uses it so bad raw values reach the quarantine. -#}
  {{ return(adapter.dispatch('try_cast', 'unirank')(expression, type)) }}
{% endmacro %}

{% macro default__try_cast(expression, type) %}
  try_cast({{ expression }} as {{ type }})
{% endmacro %}

{% macro bigquery__try_cast(expression, type) %}
  safe_cast({{ expression }} as {{ type }})
{% endmacro %}
