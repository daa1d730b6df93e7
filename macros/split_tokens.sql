{% macro split_tokens(relation, key_columns, text_column, max_tokens=8) %}
  {#- One row per (key_columns, token) for the space-separated, lower-cased words of
      `text_column`, up to `max_tokens` words. Portable: dbt.split_part over a small number
      table, no engine-specific array functions. -#}
  {%- if max_tokens < 1 -%}
    {{ exceptions.raise_compiler_error("split_tokens: max_tokens must be >= 1, got " ~ max_tokens) }}
  {%- endif -%}
  select distinct
    {% for key in key_columns %}{{ key }}, {% endfor %}
    token
  from (
    select
      {% for key in key_columns %}{{ key }}, {% endfor %}
      {{ dbt.split_part('lower(trim(' ~ text_column ~ '))', "' '", 'token_numbers.token_number') }} as token
    from {{ relation }}
    cross join (
      {% for n in range(1, max_tokens + 1) %}
      select {{ n }} as token_number{% if not loop.last %} union all{% endif %}
      {% endfor %}
    ) as token_numbers
  ) as split
  where token is not null and token <> ''
{% endmacro %}
