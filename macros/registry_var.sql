{% macro registry_var(key, default=none) %}
  {#- A registry key as the selected dataset sees it. Precedence, highest first: the key given on
      the command line (`--vars`), the key in the selected dataset's block (vars.datasets.<dataset>),
      the project's top-level key, `default`. ranker/config.py applies the same order.
      A key given on the command line is read through var(), not from the invocation's arguments:
      var() applies dbt's own precedence, in which a unit test's `overrides: vars` wins over
      --vars (the union's unit tests pin their stratification and canvases). -#}
  {%- set cli_vars = invocation_args_dict.get('vars') or {} -%}
  {%- if cli_vars is string -%}
    {%- set cli_vars = fromyaml(cli_vars) or {} -%}
  {%- endif -%}
  {%- if key in cli_vars -%}
    {{ return(var(key)) }}
  {%- endif -%}
  {%- set block = dataset_block() -%}
  {%- if key in block -%}
    {{ return(block[key]) }}
  {%- endif -%}
  {{ return(var(key, default)) }}
{% endmacro %}
