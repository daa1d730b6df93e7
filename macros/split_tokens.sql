{% macro split_tokens(relation, key_columns, text_column, max_tokens=8) %}
  {#- One row per (key_columns, token) for the space-separated, lower-cased words of
      `text_column`, up to `max_tokens` words. Portable: one dbt.split_part per word position
      with a literal part number (adapters such as Spark and BigQuery build split_part from
      array indexing and need the number at compile time), no engine-specific arrays. -#}
  {%- if max_tokens < 1 -%}
    {{ exceptions.raise_compiler_error("split_tokens: max_tokens must be >= 1, got " ~ max_tokens) }}
  {%- endif -%}
  select distinct
    {% for key in key_columns %}{{ key }}, {% endfor %}
    token
  from (
    {% for n in range(1, max_tokens + 1) %}
    select
      {% for key in key_columns %}{{ key }}, {% endfor %}
      {{ dbt.split_part('lower(trim(' ~ text_column ~ '))', "' '", n) }} as token
    from {{ relation }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
  ) as split
  where token is not null and token <> ''
{% endmacro %}
