{% macro unirank_quoted(values) %}
  {#- A comma-separated list of quoted string literals, for `in (...)`: ['a', "b'c"] gives
      'a', 'b''c'. -#}
  {%- for value in values -%}
    '{{ value | string | replace("'", "''") }}'{% if not loop.last %}, {% endif %}
  {%- endfor -%}
{% endmacro %}
