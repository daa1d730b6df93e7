{% macro unirank_registry() %}
  {#- Read and validate the registry in dbt_project.yml vars, as the selected dataset sees it
      (registry_var); return it as a dict.
      Every problem fails compilation with a message naming the entry and the fix. -#}
  {%- set columns = registry_var('context_columns', []) -%}
  {%- set canvases = registry_var('canvases', []) -%}
  {%- set strat = registry_var('stratification', {}) -%}
  {%- set split = registry_var('split', {}) -%}
  {%- set allowed_types = ['string', 'int', 'float'] -%}
  {%- set strategies = ['traffic', 'equal', 'weights'] -%}

  {%- if columns | length == 0 -%}
    {{ exceptions.raise_compiler_error("registry: vars.context_columns is empty; declare at least one context column (name, type, sentinel).") }}
  {%- endif -%}
  {%- set column_names = [] -%}
  {%- for col in columns -%}
    {%- if col.name is not defined or col.sentinel is not defined -%}
      {{ exceptions.raise_compiler_error("registry: context column #" ~ loop.index ~ " (" ~ col ~ ") needs `name` and `sentinel`.") }}
    {%- endif -%}
    {%- if col.get('type', 'string') not in allowed_types -%}
      {{ exceptions.raise_compiler_error("registry: context column '" ~ col.name ~ "' has type '" ~ col.type ~ "'; use one of " ~ allowed_types ~ ".") }}
    {%- endif -%}
    {%- if col.name in column_names -%}
      {{ exceptions.raise_compiler_error("registry: context column '" ~ col.name ~ "' is declared twice.") }}
    {%- endif -%}
    {%- do column_names.append(col.name) -%}
  {%- endfor -%}

  {%- if canvases | length == 0 -%}
    {{ exceptions.raise_compiler_error("registry: vars.canvases is empty; declare at least one canvas (name, label_model, context_columns, weight).") }}
  {%- endif -%}
  {%- set canvas_names = [] -%}
  {%- for canvas in canvases -%}
    {%- set where = "registry: canvas '" ~ canvas.get('name', '#' ~ loop.index) ~ "'" -%}
    {%- for key in ['name', 'label_model', 'context_columns'] -%}
      {%- if canvas.get(key) is none -%}
        {{ exceptions.raise_compiler_error(where ~ " is missing `" ~ key ~ "`.") }}
      {%- endif -%}
    {%- endfor -%}
    {%- if canvas.name in canvas_names -%}
      {{ exceptions.raise_compiler_error(where ~ " is declared twice; canvas names must be unique.") }}
    {%- endif -%}
    {%- do canvas_names.append(canvas.name) -%}
    {%- for name in canvas.context_columns + canvas.get('required_context', []) -%}
      {%- if name not in column_names -%}
        {{ exceptions.raise_compiler_error(where ~ " names unknown context column '" ~ name ~ "'; declare it under vars.context_columns or use one of " ~ column_names ~ ".") }}
      {%- endif -%}
    {%- endfor -%}
    {%- for name in canvas.get('required_context', []) -%}
      {%- if name not in canvas.context_columns -%}
        {{ exceptions.raise_compiler_error(where ~ " requires context column '" ~ name ~ "' but does not list it in its context_columns.") }}
      {%- endif -%}
    {%- endfor -%}
    {%- if canvas.get('serving') is not none -%}
      {%- set serving = canvas.serving -%}
      {%- set sources = ['popular_in_canvas', 'popular_in_category', 'coengagement', 'title_match', 'user_categories'] -%}
      {%- if serving.get('key') not in canvas.context_columns -%}
        {{ exceptions.raise_compiler_error(where ~ " serving key '" ~ serving.get('key') ~ "' is not one of its context_columns " ~ canvas.context_columns ~ ".") }}
      {%- endif -%}
      {%- for column in serving.get('carry', []) -%}
        {%- if column not in canvas.context_columns -%}
          {{ exceptions.raise_compiler_error(where ~ " serving carries '" ~ column ~ "', which it does not fill.") }}
        {%- endif -%}
      {%- endfor -%}
      {%- for source in serving.get('sources', []) + serving.get('fallbacks', []) -%}
        {%- if source not in sources -%}
          {{ exceptions.raise_compiler_error(where ~ " serving names unknown candidate source '" ~ source ~ "'; use one of " ~ sources ~ ".") }}
        {%- endif -%}
      {%- endfor -%}
      {%- if serving.get('sources', []) | length == 0 -%}
        {{ exceptions.raise_compiler_error(where ~ " serving needs at least one entry in `sources`.") }}
      {%- endif -%}
    {%- endif -%}
    {%- set weight = canvas.get('weight', 1.0) -%}
    {%- if weight is not number or weight <= 0 -%}
      {{ exceptions.raise_compiler_error(where ~ " has weight " ~ weight ~ "; weights must be positive numbers.") }}
    {%- endif -%}
  {%- endfor -%}

  {%- if strat.get('strategy', 'traffic') not in strategies -%}
    {{ exceptions.raise_compiler_error("registry: stratification.strategy is '" ~ strat.strategy ~ "'; use one of " ~ strategies ~ ".") }}
  {%- endif -%}
  {%- if strat.get('budget', 1) is not number or strat.get('budget', 1) <= 0 -%}
    {{ exceptions.raise_compiler_error("registry: stratification.budget is " ~ strat.budget ~ "; it must be a positive number of requests.") }}
  {%- endif -%}
  {%- if split.get('valid_from') is none or split.get('test_from') is none or split.valid_from | string >= split.test_from | string -%}
    {{ exceptions.raise_compiler_error("registry: split needs valid_from < test_from (dates), got " ~ split ~ ".") }}
  {%- endif -%}

  {{ return({
      'context_columns': columns,
      'canvases': canvases,
      'stratification': {
          'strategy': strat.get('strategy', 'traffic'),
          'budget': strat.get('budget', 1000000),
          'seed': strat.get('seed', 0)},
      'split': split}) }}
{% endmacro %}
