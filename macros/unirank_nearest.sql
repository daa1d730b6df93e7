{% macro unirank_nearest(word, candidates) %}
  {#- The candidate closest to `word` by edit distance (insertions, deletions, substitutions),
      or none when even the closest differs in more than a third of its letters: the "did you
      mean" of the registry's unknown-key errors. -#}
  {%- set best = namespace(word=none, distance=999) -%}
  {%- for candidate in candidates -%}
    {%- set row = namespace(previous=range(candidate | length + 1) | list) -%}
    {%- for i in range(1, word | length + 1) -%}
      {%- set current = namespace(values=[i]) -%}
      {%- for j in range(1, candidate | length + 1) -%}
        {%- set cost = 0 if word[i - 1] == candidate[j - 1] else 1 -%}
        {%- set current.values = current.values + [[row.previous[j] + 1, current.values[j - 1] + 1, row.previous[j - 1] + cost] | min] -%}
      {%- endfor -%}
      {%- set row.previous = current.values -%}
    {%- endfor -%}
    {%- if row.previous[-1] < best.distance -%}
      {%- set best.word = candidate -%}
      {%- set best.distance = row.previous[-1] -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if best.distance * 3 > [word | length, (best.word or '') | length] | max -%}
    {{ return(none) }}
  {%- endif -%}
  {{ return(best.word) }}
{% endmacro %}
