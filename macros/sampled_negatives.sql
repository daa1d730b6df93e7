{% macro sampled_negatives(requests, pool, exclusions, negatives_per_request, seed) %}
  {#- Negatives for logs without impressions: for each request, up to `negatives_per_request`
      distinct items drawn from its pool with probability proportional to their weight, never an
      item its owner engages with at or after the request (a false negative) and never the
      request's own `excluded_item_id` (e.g. a related request's source item). Items the owner
      engaged with before the request stay eligible: a recommender sees that history, so a
      negative may carry it too. Deterministic and engine-independent: draw d of request r takes
      ticket unirank.hash_bucket(r|d|seed, pool tickets) of the pool's tickets (each item holds `weight`
      consecutive tickets), so the same inputs give the same negatives everywhere, for every
      model compared.
        requests    relation: request_id, pool_key, exclusion_key, requested_at, excluded_item_id
                    (NULL when none)
        pool        relation: pool_key, item_id, weight (integer >= 1; capped at 10000)
        exclusions  relation: exclusion_key, item_id, last_engaged_at: the owner's (user's,
                    visit's) engagements; an item is excluded for a request at or before its
                    last engagement
      Returns one row per (request_id, item_id) with `negative_rank` (1 = first draw kept).
      2n + 10 draws are made per request; a request whose pool is nearly all excluded gets fewer. -#}
  {%- if negatives_per_request is not number or negatives_per_request < 1 -%}
    {{ exceptions.raise_compiler_error("sampled_negatives: negatives_per_request must be a positive integer, got " ~ negatives_per_request ~ ".") }}
  {%- endif -%}
  {%- set draws = 2 * negatives_per_request + 10 -%}
  with

  pool_weighted as (
      select
          pool_key,
          item_id,
          cast(case when weight > 10000 then 10000 else weight end as {{ dbt.type_bigint() }}) as weight
      from {{ pool }}
      where weight >= 1
  ),

  ticket_numbers as (
      select cast(generated_number as {{ dbt.type_bigint() }}) as generated_number
      from ({{ dbt.generate_series(10000) }}) as series
  ),

  tickets as (
      select
          pool_weighted.pool_key,
          pool_weighted.item_id,
          row_number() over (
              partition by pool_weighted.pool_key
              order by pool_weighted.item_id, ticket_numbers.generated_number
          ) - 1 as ticket
      from pool_weighted
      inner join ticket_numbers
          on ticket_numbers.generated_number <= pool_weighted.weight
  ),

  pool_sizes as (
      select
          pool_key,
          count(*) as tickets
      from tickets
      group by pool_key
  ),

  draw_numbers as (
      select cast(generated_number as {{ dbt.type_bigint() }}) as generated_number
      from ({{ dbt.generate_series(draws) }}) as series
  ),

  draws as (
      select
          requests.request_id,
          requests.pool_key,
          requests.exclusion_key,
          requests.requested_at,
          requests.excluded_item_id,
          draw_numbers.generated_number as draw,
          {{ unirank.hash_bucket(dbt.concat(['requests.request_id', "'|'", 'cast(draw_numbers.generated_number as ' ~ dbt.type_string() ~ ')', "'|" ~ seed ~ "'"]), 'pool_sizes.tickets') }} as ticket
      from {{ requests }} as requests
      inner join pool_sizes
          on requests.pool_key = pool_sizes.pool_key
      cross join draw_numbers
  ),

  draws_resolved as (
      select
          draws.request_id,
          tickets.item_id,
          min(draws.draw) as first_draw
      from draws
      inner join tickets
          on draws.pool_key = tickets.pool_key
          and draws.ticket = tickets.ticket
      left join {{ exclusions }} as exclusions
          on draws.exclusion_key = exclusions.exclusion_key
          and tickets.item_id = exclusions.item_id
          and exclusions.last_engaged_at >= draws.requested_at
      where exclusions.item_id is null
          and (draws.excluded_item_id is null or tickets.item_id <> draws.excluded_item_id)
      group by draws.request_id, tickets.item_id
  ),

  draws_ranked as (
      select
          request_id,
          item_id,
          row_number() over (partition by request_id order by first_draw, item_id) as negative_rank
      from draws_resolved
  )

  select
      request_id,
      item_id,
      negative_rank
  from draws_ranked
  where negative_rank <= {{ negatives_per_request }}
{% endmacro %}
