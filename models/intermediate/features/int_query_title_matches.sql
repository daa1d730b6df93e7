{#- Query-title word matches: one row per (query, item) sharing at least one word, with how many
    of the query's words the title holds. The single implementation behind the search feature
    `query_title_match` and the `title_match` candidate source. Queries come from the unified
    labels and the serving contexts. Built when the registry declares the context column
    query_text. -#}
{{ config(enabled=unirank_uses('query_text')) }}
with

labels_unioned as (
    select * from {{ ref('int_labels_unioned') }}
),

serving_contexts as (
    select * from {{ ref('int_serving_contexts') }}
),

items as (
    select * from {{ ref('int_items') }}
),

queries as (
    select query_text from labels_unioned where query_text <> {{ sentinel_of('query_text') }}
    union
    select query_text from serving_contexts where query_text <> {{ sentinel_of('query_text') }}
),

query_tokens as (
    {{ split_tokens('queries', ['query_text'], 'query_text') }}
),

title_tokens as (
    {{ split_tokens('items', ['item_id'], 'title') }}
),

query_lengths as (
    select
        query_text,
        count(*) as n_query_tokens
    from query_tokens
    group by query_text
),

tokens_matched as (
    select
        query_tokens.query_text,
        title_tokens.item_id,
        count(*) as n_matched
    from query_tokens
    inner join title_tokens
        on query_tokens.token = title_tokens.token
    group by query_tokens.query_text, title_tokens.item_id
),

final as (
    select
        tokens_matched.query_text,
        tokens_matched.item_id,
        tokens_matched.n_matched,
        query_lengths.n_query_tokens,
        tokens_matched.n_matched / cast(query_lengths.n_query_tokens as {{ type_double() }}) as match_share
    from tokens_matched
    inner join query_lengths
        on tokens_matched.query_text = query_lengths.query_text
)

select * from final
