{% macro unirank_registry() %}
  {#- The registry of the project dbt runs: `vars: unirank:` in its dbt_project.yml (dbt hands
      a package the root project's value), validated against the schema ranker/registry.py
      defines (unirank_registry_spec), with defaults filled in and the built-in feature models
      resolved. A registry key given at the top level of `--vars` replaces that key, as
      unirank-cli does. Every problem fails compilation with a message naming the key, where it
      is and what to do. Returns the registry plus:
        feature_models   every feature model with its columns (name, type, default, ...)
        feature_columns  their columns, in order
        context_names, canvas_names -#}
  {%- set spec = unirank.unirank_registry_spec() -%}
  {%- set raw = var('unirank', none) -%}
  {%- if raw is none -%}
    {{ exceptions.raise_compiler_error("registry: this project declares no `vars: unirank:` block in its dbt_project.yml; declare the canvases, context columns, inputs and split there (see `unirank-cli init` and docs/registry.md).") }}
  {%- endif -%}
  {%- if raw is not mapping -%}
    {{ exceptions.raise_compiler_error("registry: vars.unirank must be a mapping of registry keys, got " ~ raw ~ ".") }}
  {%- endif -%}
  {%- set cli_vars = invocation_args_dict.get('vars') or {} -%}
  {%- if cli_vars is string -%}
    {%- set cli_vars = fromyaml(cli_vars) or {} -%}
  {%- endif -%}
  {%- set merged = {} -%}
  {%- do merged.update(raw) -%}
  {%- for key in spec.registry['keys'] if key in cli_vars -%}
    {#- through var(): a unit test's `overrides: vars` wins over --vars, as dbt intends -#}
    {%- do merged.update({key: var(key)}) -%}
  {%- endfor -%}
  {%- set registry = unirank.unirank_checked(merged, spec.registry, 'vars.unirank') -%}
  {{ return(unirank.unirank_registry_resolved(registry, spec.builtin_features)) }}
{% endmacro %}
