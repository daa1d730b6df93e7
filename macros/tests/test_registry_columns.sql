{% test registry_columns(model, mart) %}
  {#- The contract of a mart whose columns follow the registry (`mart`: ranking_examples or
      serving_candidates): exactly the expected columns, in order, each feature and context
      column of its declared type (string, int, float). One row per problem. -#}
  {%- set registry = unirank.unirank_registry() -%}
  {%- set typed = {} -%}
  {%- for column in registry.context_columns + registry.feature_columns -%}
    {%- do typed.update({column.name: column.type}) -%}
  {%- endfor -%}
  {%- set features = registry.feature_columns | map(attribute='name') | list -%}
  {%- if mart == 'ranking_examples' -%}
    {%- set expected = ['request_id', 'item_id', 'task_type'] + registry.context_names + ['split', 'label'] + features + ['requested_at'] -%}
  {%- elif mart == 'serving_candidates' -%}
    {%- set expected = ['request_id', 'item_id', 'task_type', 'context_key'] + registry.context_names + ['candidate_source', 'candidate_rank'] + features + ['served_as_of', 'dbt_invocation_id'] -%}
  {%- else -%}
    {{ exceptions.raise_compiler_error("registry_columns: mart is '" ~ mart ~ "'; use ranking_examples or serving_candidates.") }}
  {%- endif -%}
  {%- set problems = [] -%}
  {%- if execute -%}
    {%- set actual = adapter.get_columns_in_relation(model) -%}
    {%- set names = actual | map(attribute='name') | map('lower') | list -%}
    {%- if names != expected -%}
      {%- do problems.append(('columns are ' ~ names | join(',') ~ '; the registry expects ' ~ expected | join(','), '')) -%}
    {%- endif -%}
    {%- for column in actual if column.name | lower in typed -%}
      {%- set kind = typed[column.name | lower] -%}
      {%- set dtype = column.dtype | lower -%}
      {%- set ok = ('char' in dtype or 'string' in dtype or 'text' in dtype) if kind == 'string' else (('int' in dtype) if kind == 'int' else ('double' in dtype or 'float' in dtype)) -%}
      {%- if not ok -%}
        {%- do problems.append(('has type ' ~ column.dtype ~ ', the registry declares ' ~ kind, column.name)) -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {% for problem, column in problems %}
  select '{{ column }}' as column_name, '{{ problem | replace("'", "''") }}' as problem
  {% if not loop.last %}union all{% endif %}
  {% else %}
  select cast(null as {{ dbt.type_string() }}) as column_name, cast(null as {{ dbt.type_string() }}) as problem
  where 1 = 0
  {% endfor %}
{% endtest %}
