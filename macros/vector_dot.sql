{% macro vector_dot(left, right, dimensions, prefix='rep_') %}
  {#- The dot product of two vectors stored as `dimensions` double columns (`rep_0`, `rep_1`,
      ...) of the relations (or aliases) `left` and `right`: portable SQL, no array type. With
      unit vectors it is their cosine. -#}
  {%- if dimensions < 1 -%}
    {{ exceptions.raise_compiler_error("vector_dot: dimensions must be at least 1, got " ~ dimensions) }}
  {%- endif -%}
  ({% for d in range(dimensions) %}{{ left }}.{{ prefix }}{{ d }} * {{ right }}.{{ prefix }}{{ d }}{% if not loop.last %} + {% endif %}{% endfor %})
{%- endmacro %}
