{% macro hash_bucket(expression, buckets) %}
  {#- A deterministic bucket in [0, buckets) for a string expression: the first 12 hex digits of
      its md5 (48 bits) as an integer, modulo `buckets`. md5 is the same on every engine, so the
      bucket is too; only the hex-to-integer step is dispatched. -#}
  {{ return(adapter.dispatch('hash_bucket', 'unirank')(expression, buckets)) }}
{% endmacro %}

{% macro default__hash_bucket(expression, buckets) %}
  (cast(('0x' || substr(md5(cast({{ expression }} as {{ dbt.type_string() }})), 1, 12)) as {{ dbt.type_bigint() }}) % ({{ buckets }}))
{% endmacro %}

{% macro spark__hash_bucket(expression, buckets) %}
  pmod(cast(conv(substr(md5(cast({{ expression }} as string)), 1, 12), 16, 10) as bigint), {{ buckets }})
{% endmacro %}
