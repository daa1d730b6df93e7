{% macro labels_with_sampled_negatives(requests, positives, pool, exclusions, pool_key, exclusion_key, context_columns, excluded_item_id=none) %}
  {#- A label model's rows for logs without impressions: the request's positives (`positives`:
      request_id, item_id, label) and its sampled negatives (label 0, `sampled_negatives` with
      vars.negative_sampling), each with the request's context columns and requested_at.
        requests          relation: request_id, requested_at and the columns below
        positives         relation: request_id, item_id, label (> 0)
        pool, exclusions  as for `sampled_negatives`
        pool_key          SQL expression over `requests`: the pool a request draws from
        exclusion_key     SQL expression over `requests`: whose engagements are never negatives
        context_columns   columns of `requests` carried to every row, in this order
        excluded_item_id  SQL expression over `requests` never drawn (e.g. a source item), or none
      Returns request_id, item_id, <context_columns>, label, requested_at. -#}
  {%- set sampling = unirank.unirank_registry().negative_sampling -%}
  with

  negative_requests as (
      select
          request_id,
          {{ pool_key }} as pool_key,
          {{ exclusion_key }} as exclusion_key,
          requested_at,
          {{ excluded_item_id if excluded_item_id else 'cast(null as ' ~ dbt.type_string() ~ ')' }} as excluded_item_id
      from {{ requests }}
  ),

  negatives as (
      {{ unirank.sampled_negatives('negative_requests', pool, exclusions, sampling.get('negatives_per_request', 20), sampling.get('seed', 0)) }}
  ),

  candidates as (
      select request_id, item_id, label from {{ positives }}
      union all
      select request_id, item_id, 0 as label from negatives
  )

  select
      candidates.request_id,
      candidates.item_id,
      {% for column in context_columns -%}
      {{ requests }}.{{ column }},
      {% endfor -%}
      candidates.label,
      {{ requests }}.requested_at
  from candidates
  inner join {{ requests }}
      on candidates.request_id = {{ requests }}.request_id
{% endmacro %}
