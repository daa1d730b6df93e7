{% macro strictly_before(partition_by, order_by='at_us', lookback_us=none) %}
  {#- Window clause counting rows strictly earlier than the current row's `order_by` (an integer
      microsecond axis), within `partition_by`; optionally only the last `lookback_us`. NULL
      ordering is explicit: engines default differently (DuckDB last, Spark and BigQuery first),
      and BigQuery cannot express NULLS LAST in a window frame. The axis is never NULL here. -#}
  {%- if partition_by | length == 0 -%}
    {{ exceptions.raise_compiler_error("strictly_before: partition_by needs at least one column") }}
  {%- endif -%}
  over (
    partition by {{ partition_by | join(', ') }}
    order by {{ order_by }} nulls first
    range between {% if lookback_us is none %}unbounded{% else %}{{ lookback_us }}{% endif %} preceding and 1 preceding
  )
{% endmacro %}
