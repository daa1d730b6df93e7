{% macro demo_attributed(event_at, requested_at) %}
  {#- The demo's attribution rule, in one place: an engagement counts for its request if it
      happened at or after the request and within 24 hours of it. int_demo__impressions_graded
      labels with it; int_demo__source_rows gives the engagements it rejects their reason. -#}
  ({{ event_at }} >= {{ requested_at }} and {{ event_at }} < {{ dbt.dateadd('day', 1, requested_at) }})
{% endmacro %}
