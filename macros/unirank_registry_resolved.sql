{% macro unirank_registry_resolved(registry, builtin_features) %}
  {#- The cross-key rules of the registry (ranker/registry.py `_check_consistency` applies the
      same) and the feature models resolved: a built-in one gets its columns, those whose
      context columns the registry declares. Returns the registry with feature_models,
      feature_columns, context_names and canvas_names added. -#}
  {%- set source_needs = {
      'popular_in_canvas': [],
      'popular_in_category': ['category', 'source_item_id'],
      'coengagement': ['source_item_id'],
      'title_match': ['query_text'],
      'user_categories': ['user_id']} -%}
  {%- set impute_needs = {
      'source_item_title': 'source_item_id',
      'source_item_category': 'source_item_id',
      'category_name': 'category',
      'user_top_category': 'user_id'} -%}
  {%- set reserved = ['request_id', 'item_id', 'task_type', 'split', 'label', 'requested_at', 'requested_at_us', 'is_serving', 'context_key', 'candidate_source', 'candidate_rank', 'served_as_of', 'dbt_invocation_id'] -%}
  {%- set context_names = registry.context_columns | map(attribute='name') | list -%}
  {%- set canvas_names = registry.canvases | map(attribute='name') | list -%}
  {%- for names, what in [(context_names, 'context column'), (canvas_names, 'canvas'), (registry.features | map(attribute='model') | list, 'feature model')] -%}
    {%- for name in names -%}
      {%- if name in names[:loop.index0] -%}
        {{ exceptions.raise_compiler_error("registry: " ~ what ~ " '" ~ name ~ "' is declared twice; names must be unique.") }}
      {%- endif -%}
    {%- endfor -%}
  {%- endfor -%}

  {%- for canvas in registry.canvases -%}
    {%- set where = "registry: canvas '" ~ canvas.name ~ "'" -%}
    {%- for name in canvas.context_columns + canvas.required_context -%}
      {%- if name not in context_names -%}
        {{ exceptions.raise_compiler_error(where ~ " names unknown context column '" ~ name ~ "'; declare it under context_columns or use one of " ~ context_names ~ ".") }}
      {%- endif -%}
    {%- endfor -%}
    {%- for name in canvas.required_context if name not in canvas.context_columns -%}
      {{ exceptions.raise_compiler_error(where ~ " requires context column '" ~ name ~ "' but does not list it in its context_columns.") }}
    {%- endfor -%}
    {%- set imputed = [] -%}
    {%- for imputation in canvas.impute -%}
      {%- set column = imputation.column -%}
      {%- set needs = impute_needs[imputation.rule] -%}
      {%- if column not in context_names -%}
        {{ exceptions.raise_compiler_error(where ~ " imputes unknown context column '" ~ column ~ "'; declare it under context_columns or use one of " ~ context_names ~ ".") }}
      {%- elif column in canvas.context_columns -%}
        {{ exceptions.raise_compiler_error(where ~ " imputes '" ~ column ~ "', which it fills itself; impute only a column the canvas lacks.") }}
      {%- elif column in imputed -%}
        {{ exceptions.raise_compiler_error(where ~ " imputes '" ~ column ~ "' twice; keep one rule per column.") }}
      {%- elif needs not in canvas.context_columns -%}
        {{ exceptions.raise_compiler_error(where ~ " imputes '" ~ column ~ "' with " ~ imputation.rule ~ ", which reads '" ~ needs ~ "'; the canvas does not fill it.") }}
      {%- endif -%}
      {%- for declared in registry.context_columns if declared.name == column and declared.type != 'string' -%}
        {{ exceptions.raise_compiler_error(where ~ " imputes '" ~ column ~ "' with " ~ imputation.rule ~ ", a text value, but '" ~ column ~ "' is " ~ declared.type ~ "; impute only string context columns.") }}
      {%- endfor -%}
      {%- do imputed.append(column) -%}
    {%- endfor -%}
    {%- if canvas.serving is not none -%}
      {%- if canvas.serving.key not in canvas.context_columns -%}
        {{ exceptions.raise_compiler_error(where ~ " serving key '" ~ canvas.serving.key ~ "' is not one of its context_columns " ~ canvas.context_columns ~ ".") }}
      {%- endif -%}
      {%- if canvas.serving.max_k is not none and canvas.serving.max_k < canvas.serving.k -%}
        {{ exceptions.raise_compiler_error(where ~ " serving max_k=" ~ canvas.serving.max_k ~ " is below its k=" ~ canvas.serving.k ~ "; a lookup must be able to ask for what the cache holds.") }}
      {%- endif -%}
      {%- for column in canvas.serving.carry if column not in canvas.context_columns -%}
        {{ exceptions.raise_compiler_error(where ~ " serving carries '" ~ column ~ "', which it does not fill.") }}
      {%- endfor -%}
      {%- for source in canvas.serving.sources + canvas.serving.fallbacks -%}
        {%- set needs = source_needs[source] -%}
        {%- if needs and (needs | select('in', canvas.context_columns) | list | length) == 0 -%}
          {{ exceptions.raise_compiler_error(where ~ " serving uses source '" ~ source ~ "', which is keyed by " ~ (needs | join(' or ')) ~ "; the canvas fills none of them.") }}
        {%- endif -%}
      {%- endfor -%}
      {%- if canvas.serving.k > registry.serving.candidates_per_context -%}
        {{ exceptions.raise_compiler_error(where ~ " serves k=" ~ canvas.serving.k ~ " but only " ~ registry.serving.candidates_per_context ~ " candidates per context are generated; lower k or raise serving.candidates_per_context.") }}
      {%- endif -%}
    {%- endif -%}
  {%- endfor -%}

  {%- set feature_models = [] -%}
  {%- set taken = reserved + context_names -%}
  {%- for feature in registry.features -%}
    {%- set where = "registry: feature model '" ~ feature.model ~ "'" -%}
    {%- set builtin = builtin_features.get(feature.model) -%}
    {%- if builtin is not none and feature.columns is not none -%}
      {{ exceptions.raise_compiler_error(where ~ " is built in: its columns are fixed (" ~ (builtin | map(attribute='name') | join(', ')) ~ "); omit `columns`.") }}
    {%- endif -%}
    {%- if builtin is not none and feature.grain is not none -%}
      {{ exceptions.raise_compiler_error(where ~ " is built in: its grain is fixed; omit `grain`.") }}
    {%- endif -%}
    {%- if builtin is none and not feature.columns -%}
      {{ exceptions.raise_compiler_error(where ~ " declares no columns; list them (name, type, default), or use a built-in feature model: " ~ (builtin_features | list) ~ ".") }}
    {%- endif -%}
    {%- for canvas in feature.canvases or [] if canvas not in canvas_names -%}
      {{ exceptions.raise_compiler_error(where ~ " is meant for unknown canvas '" ~ canvas ~ "'; canvases are " ~ canvas_names ~ ".") }}
    {%- endfor -%}
    {%- set columns = [] -%}
    {%- if builtin is none -%}
      {%- set columns = feature.columns -%}
    {%- else -%}
      {%- for column in builtin if (column.needs | reject('in', context_names) | list | length) == 0 -%}
        {%- do columns.append({'name': column.name, 'type': column.type, 'default': column.default, 'description': column.description}) -%}
      {%- endfor -%}
      {%- if columns | length == 0 -%}
        {{ exceptions.raise_compiler_error(where ~ " needs the context column(s) " ~ (builtin | map(attribute='needs') | sum(start=[]) | unique | list) ~ ", which the registry does not declare; declare one or drop the feature.") }}
      {%- endif -%}
    {%- endif -%}
    {%- for column in columns -%}
      {%- if column.name in taken -%}
        {{ exceptions.raise_compiler_error(where ~ " column '" ~ column.name ~ "' clashes with a key, context or other feature column; rename it.") }}
      {%- endif -%}
      {%- do taken.append(column.name) -%}
      {%- set is_text = column.default is string -%}
      {%- if (column.type == 'string') != is_text or (column.type == 'int' and not is_text and column.default != column.default | int) -%}
        {{ exceptions.raise_compiler_error(where ~ " column '" ~ column.name ~ "' is " ~ column.type ~ " but its default is " ~ column.default ~ "; give a default of the same type.") }}
      {%- endif -%}
    {%- endfor -%}
    {%- do feature_models.append({'model': feature.model, 'columns': columns, 'canvases': feature.canvases, 'builtin': builtin is not none, 'grain': ('request' if builtin[0].grain == 'request' else 'builtin') if builtin is not none else (feature.grain or 'request')}) -%}
  {%- endfor -%}

  {#- ranker.registry._check_online: a canvas declared to score online uses only features online scoring computes. -#}
  {%- for canvas in registry.canvases if canvas.serving and canvas.serving.mode in ('cache_then_online', 'online') -%}
    {%- for feature in feature_models if feature.grain == 'request' and (feature.canvases is none or canvas.name in feature.canvases) -%}
      {%- if loop.first -%}
        {{ exceptions.raise_compiler_error("canvas '" ~ canvas.name ~ "' serving mode " ~ canvas.serving.mode ~ " scores at request time, but feature model '" ~ feature.model ~ "' (grain request) cannot be computed then; declare its `grain: item` if its values depend only on the candidate item, or use mode cache_only.") }}
      {%- endif -%}
    {%- endfor -%}
  {%- endfor -%}

  {%- set resolved = {} -%}
  {%- do resolved.update(registry) -%}
  {%- do resolved.update({
      'feature_models': feature_models,
      'feature_columns': feature_models | map(attribute='columns') | sum(start=[]),
      'context_names': context_names,
      'canvas_names': canvas_names}) -%}
  {{ return(resolved) }}
{% endmacro %}
