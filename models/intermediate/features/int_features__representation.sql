{#- Built-in feature model (opt-in; each column needs its context column). Cosines between the
    candidate's representation and the request's, all of one version: the latest version of
    int_item_representations whose cut is at or before the probe's time (learned only from
    engagements strictly before that cut).
      user_item_similarity    the user's vector: the sum of the vectors of the items the user
                              engaged with strictly before the request (per request, then
                              joined to its candidates)
      source_item_similarity  the source item's vector
      query_item_similarity   the query's vector: the vectors of the items whose titles hold
                              the query's words, weighted by the share of its words matched
                              (int_query_title_matches)
    Vectors are unit length, so a cosine is a dot product divided by the request vector's
    length. A probe before the first cut, an anonymous user, a user without history, an item
    without a vector: no row or NULL, so the declared default (-2, outside [-1, 1]). -#}
{{ config(enabled=unirank_uses('int_features__representation')) }}
{%- set registry = unirank_registry() -%}
{%- set dims = range(registry.representations.dimensions) -%}
{%- set has_user = 'user_id' in registry.context_names -%}
{%- set has_source = 'source_item_id' in registry.context_names -%}
{%- set has_query = 'query_text' in registry.context_names -%}
{%- set n = registry.representations.dimensions %}
with

feature_probes as (
    select * from {{ ref('int_feature_probes') }}
),

representation_versions as (
    select * from {{ ref('int_representation_versions') }}
),

item_representations as (
    select * from {{ ref('int_item_representations') }}
),

{% if has_user -%}
engagement_history as (
    select * from {{ ref('int_engagement_history') }}
    where user_id is not null
),
{%- endif %}

{% if has_query -%}
query_title_matches as (
    select * from {{ ref('int_query_title_matches') }}
),
{%- endif %}

probe_times as (
    select distinct requested_at
    from feature_probes
),

probe_versions as (
    select
        probe_times.requested_at,
        max(representation_versions.cut_at) as cut_at
    from probe_times
    inner join representation_versions
        on representation_versions.cut_at <= probe_times.requested_at
    group by probe_times.requested_at
),

probes as (
    select
        feature_probes.request_id,
        feature_probes.item_id,
        {% if has_user -%} feature_probes.user_id, {%- endif %}
        {% if has_source -%} feature_probes.source_item_id, {%- endif %}
        {% if has_query -%} feature_probes.query_text, {%- endif %}
        probe_versions.cut_at,
        feature_probes.requested_at
    from feature_probes
    inner join probe_versions
        on feature_probes.requested_at = probe_versions.requested_at
),

{% if has_user -%}
user_requests as (
    select distinct
        user_id,
        cut_at,
        requested_at
    from probes
    where user_id <> {{ sentinel_of('user_id') }}
),

user_vectors as (
    select
        user_requests.user_id,
        user_requests.requested_at,
        {% for d in dims -%}
        sum(item_representations.rep_{{ d }}) as rep_{{ d }}{% if not loop.last %},{% endif %}
        {% endfor %}
    from user_requests
    inner join engagement_history
        on user_requests.user_id = engagement_history.user_id
        and engagement_history.engaged_at < user_requests.requested_at
    inner join item_representations
        on user_requests.cut_at = item_representations.cut_at
        and engagement_history.item_id = item_representations.item_id
    group by user_requests.user_id, user_requests.requested_at
),

user_vectors_normed as (
    select
        *,
        sqrt({{ vector_dot('user_vectors', 'user_vectors', n) }}) as vector_norm
    from user_vectors
),
{%- endif %}

{% if has_query -%}
query_requests as (
    select distinct
        query_text,
        cut_at
    from probes
    where query_text <> {{ sentinel_of('query_text') }}
),

query_vectors as (
    select
        query_requests.query_text,
        query_requests.cut_at,
        {% for d in dims -%}
        sum(query_title_matches.match_share * item_representations.rep_{{ d }}) as rep_{{ d }}{% if not loop.last %},{% endif %}
        {% endfor %}
    from query_requests
    inner join query_title_matches
        on query_requests.query_text = query_title_matches.query_text
    inner join item_representations
        on query_requests.cut_at = item_representations.cut_at
        and query_title_matches.item_id = item_representations.item_id
    group by query_requests.query_text, query_requests.cut_at
),

query_vectors_normed as (
    select
        *,
        sqrt({{ vector_dot('query_vectors', 'query_vectors', n) }}) as vector_norm
    from query_vectors
),
{%- endif %}

final as (
    select
        probes.request_id,
        probes.item_id,
        {% if has_user -%}
        case
            when user_vectors_normed.vector_norm > 1e-12
                then {{ vector_dot('user_vectors_normed', 'candidate', n) }} / user_vectors_normed.vector_norm
        end as user_item_similarity,
        {%- endif %}
        {% if has_source -%}
        {{ vector_dot('source', 'candidate', n) }} as source_item_similarity,
        {%- endif %}
        {% if has_query -%}
        case
            when query_vectors_normed.vector_norm > 1e-12
                then {{ vector_dot('query_vectors_normed', 'candidate', n) }} / query_vectors_normed.vector_norm
        end as query_item_similarity,
        {%- endif %}
        probes.cut_at as representation_cut_at
    from probes
    inner join item_representations as candidate
        on probes.cut_at = candidate.cut_at
        and probes.item_id = candidate.item_id
    {% if has_user -%}
    left join user_vectors_normed
        on probes.user_id = user_vectors_normed.user_id
        and probes.requested_at = user_vectors_normed.requested_at
    {% endif -%}
    {% if has_source -%}
    left join item_representations as source
        on probes.cut_at = source.cut_at
        and probes.source_item_id = source.item_id
    {% endif -%}
    {% if has_query -%}
    left join query_vectors_normed
        on probes.query_text = query_vectors_normed.query_text
        and probes.cut_at = query_vectors_normed.cut_at
    {% endif %}
)

select * from final
