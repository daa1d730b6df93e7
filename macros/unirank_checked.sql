{% macro unirank_checked(value, spec, where) %}
  {#- `value` checked against `spec` (a node of unirank_registry_spec: object, list or scalar),
      with the defaults of absent keys filled in. Fails compilation naming the key and where it
      is: an unknown key (with the nearest valid one), a missing key, a wrong type, a value out
      of range or not among the allowed ones. ranker/registry.py applies the same schema. -#}
  {%- set kind = spec['type'] -%}
  {%- if value is none -%}
    {%- if spec.get('nullable') -%}
      {{ return(none) }}
    {%- endif -%}
    {{ exceptions.raise_compiler_error("registry: " ~ where ~ " is empty; give it a value.") }}
  {%- endif -%}
  {%- if kind == 'object' -%}
    {%- if spec.get('shorthand') and value is string -%}
      {%- set value = {spec['shorthand']: value} -%}
    {%- endif -%}
    {%- if value is not mapping -%}
      {{ exceptions.raise_compiler_error("registry: " ~ where ~ " must be a mapping with keys " ~ (spec['keys'] | list) ~ ", got " ~ value ~ ".") }}
    {%- endif -%}
    {%- for key in value -%}
      {%- if key not in spec['keys'] -%}
        {%- set near = unirank.unirank_nearest(key, spec['keys'] | list) -%}
        {{ exceptions.raise_compiler_error("registry: unknown key `" ~ key ~ "` in " ~ where ~ "; " ~ ("did you mean `" ~ near ~ "`?" if near else "valid keys: " ~ (spec['keys'] | join(', '))) ) }}
      {%- endif -%}
    {%- endfor -%}
    {%- set result = {} -%}
    {%- for key, child in spec['keys'].items() -%}
      {%- if key in value -%}
        {%- do result.update({key: unirank.unirank_checked(value[key], child, where ~ '.' ~ key)}) -%}
      {%- elif 'default' in child -%}
        {%- do result.update({key: unirank.unirank_checked(child['default'], child, where ~ '.' ~ key)}) -%}
      {%- else -%}
        {{ exceptions.raise_compiler_error("registry: " ~ where ~ "." ~ key ~ " is missing.") }}
      {%- endif -%}
    {%- endfor -%}
    {{ return(result) }}
  {%- elif kind == 'list' -%}
    {%- if value is string or value is mapping or value is not iterable -%}
      {{ exceptions.raise_compiler_error("registry: " ~ where ~ " must be a list, got " ~ value ~ ".") }}
    {%- endif -%}
    {%- if value | length < spec.get('min_items', 0) -%}
      {{ exceptions.raise_compiler_error("registry: " ~ where ~ " needs at least " ~ spec['min_items'] ~ " entry.") }}
    {%- endif -%}
    {%- set result = [] -%}
    {%- for item in value -%}
      {%- set label = (item.get('name') or item.get('model')) if item is mapping else none -%}
      {%- do result.append(unirank.unirank_checked(item, spec['items'], where ~ '[' ~ (label or loop.index0) ~ ']')) -%}
    {%- endfor -%}
    {{ return(result) }}
  {%- endif -%}
  {%- set is_bool = value is sameas true or value is sameas false -%}
  {%- set problem = none -%}
  {%- if kind == 'boolean' and not is_bool -%}
    {%- set problem = "must be true or false" -%}
  {%- elif kind == 'string' and value is not string -%}
    {%- set problem = "must be text" -%}
  {%- elif kind == 'integer' and (is_bool or value is not number or value != value | int) -%}
    {%- set problem = "must be a whole number" -%}
  {%- elif kind == 'number' and (is_bool or value is not number) -%}
    {%- set problem = "must be a number" -%}
  {%- elif kind == 'scalar' and (is_bool or not (value is string or value is number)) -%}
    {%- set problem = "must be text or a number" -%}
  {%- elif kind == 'timestamp' -%}
    {%- set value = (value | string) | replace('T', ' ') -%}
    {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?)?$', value) -%}
      {%- set problem = "must be a date or a naive timestamp (UTC): YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS]" -%}
    {%- endif -%}
  {%- endif -%}
  {%- if problem is none and 'enum' in spec and value not in spec['enum'] -%}
    {%- set problem = "must be one of " ~ spec['enum'] -%}
  {%- endif -%}
  {%- if problem is none and 'min' in spec and value < spec['min'] -%}
    {%- set problem = "must be at least " ~ spec['min'] -%}
  {%- elif problem is none and 'above' in spec and value <= spec['above'] -%}
    {%- set problem = "must be greater than " ~ spec['above'] -%}
  {%- elif problem is none and 'max' in spec and value > spec['max'] -%}
    {%- set problem = "must be at most " ~ spec['max'] -%}
  {%- endif -%}
  {%- if problem is not none -%}
    {{ exceptions.raise_compiler_error("registry: " ~ where ~ " is " ~ value ~ "; it " ~ problem ~ ".") }}
  {%- endif -%}
  {{ return(value) }}
{% endmacro %}
