{% macro strictly_before(partition_by, order_by='at_us', events_after='is_event') %}
  {#- Window clause summing what happened strictly before each probe, within `partition_by`, on
      a table of events and probes: `order_by` is the time axis (integer microseconds, never
      NULL), `events_after` a column that is 0 on probe rows and 1 on event rows. At one instant
      probes sort before events, so a running frame that stops one row short of the current row
      holds exactly the events earlier than the probe (and earlier probes, which must add 0 to
      the summed expression). Read the result on probe rows only. A ROWS frame is a running sum
      on every engine; the equivalent RANGE frame (`1 preceding`) costs DuckDB a segment tree
      per window, 44 s against 25 s for item popularity at 10M impressions. NULL ordering is
      explicit on both keys (neither is NULL): engines default differently (DuckDB last, Spark
      and BigQuery first), and BigQuery cannot say NULLS LAST in a window frame. -#}
  {%- if partition_by | length == 0 -%}
    {{ exceptions.raise_compiler_error("strictly_before: partition_by needs at least one column") }}
  {%- endif -%}
  over (
    partition by {{ partition_by | join(', ') }}
    order by {{ order_by }} nulls first, {{ events_after }} nulls first
    rows between unbounded preceding and 1 preceding
  )
{% endmacro %}
