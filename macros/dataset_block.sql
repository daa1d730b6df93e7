{% macro dataset_block() %}
  {#- The selected dataset's registry block (vars.datasets.<vars.dataset>): the registry keys that
      dataset sets for itself. Fails compilation when the dataset is not declared. -#}
  {%- set name = var('dataset', 'demo') -%}
  {%- set datasets = var('datasets', {'demo': {}}) -%}
  {%- if name not in datasets -%}
    {{ exceptions.raise_compiler_error("registry: vars.dataset is '" ~ name ~ "'; declare it under vars.datasets or use one of " ~ (datasets.keys() | list | sort) ~ ".") }}
  {%- endif -%}
  {{ return(datasets[name] or {}) }}
{% endmacro %}
