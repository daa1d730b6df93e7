{% macro unirank_uses(what) %}
  {#- Whether the registry uses a built-in part, so models that only it needs are built only
      then: a built-in feature model (by name: registered and computable from the declared
      context), a candidate source (by name: in some canvas's sources or fallbacks), or a
      context column (by name: declared). -#}
  {%- set registry = unirank.unirank_registry() -%}
  {%- if what in registry.feature_models | map(attribute='model') | list -%}
    {{ return(true) }}
  {%- endif -%}
  {%- for canvas in registry.canvases if canvas.serving -%}
    {%- if what in canvas.serving.sources + canvas.serving.fallbacks -%}
      {{ return(true) }}
    {%- endif -%}
  {%- endfor -%}
  {{ return(what in registry.context_names) }}
{% endmacro %}
