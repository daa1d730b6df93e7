{% macro impute_context(rows, columns_after) %}
  {#- The body of a CTE: `rows` (a CTE with task_type, request_id, every registry context column
      - a canvas's missing ones at their sentinels - and requested_at) with each canvas's
      registry `impute` rules applied: a context column the canvas lacks gets a related value,
      point-in-time, instead of its sentinel; no value keeps the sentinel. Then the
      `columns_after` columns of `rows`, unchanged. Training rows (macro stratified_union) and
      serving contexts (macro serving_contexts) both go through here, and ranker.online applies
      the same rules at request time (tested against this SQL by the online skew check).

        source_item_title     the source item's title (int_items)
        source_item_category  the source item's category (int_items)
        category_name         the browsed category's own value
        user_top_category     the category the user engaged with most strictly before
                              requested_at (int_engagement_history's item_category; ties: the
                              smallest name) -#}
  {%- set registry = unirank.unirank_registry() -%}
  {%- set rules = [] -%}
  {%- for canvas in registry.canvases -%}
    {%- for imputation in canvas.impute -%}
      {%- do rules.append({'canvas': canvas.name, 'column': imputation.column, 'rule': imputation.rule}) -%}
    {%- endfor -%}
  {%- endfor -%}
  {%- set reads = rules | map(attribute='rule') | list -%}
  {%- set by_source = 'source_item_title' in reads or 'source_item_category' in reads -%}
  {%- set top_canvases = rules | selectattr('rule', 'equalto', 'user_top_category') | map(attribute='canvas') | unique | list -%}
  {%- set values = {
      'source_item_title': 'imputed_source_items.title',
      'source_item_category': 'imputed_source_items.category',
      'category_name': rows ~ '.category',
      'user_top_category': 'imputed_top_categories.category'} -%}
select
    {{ rows }}.request_id,
    {{ rows }}.task_type,
    {% for column in registry.context_columns -%}
    {%- set filled = rules | selectattr('column', 'equalto', column.name) | list -%}
    {%- if filled -%}
    case
        {% for rule in filled -%}
        {%- set value = values[rule.rule] -%}
        {%- if rule.rule == 'category_name' -%}
        {%- set value = 'nullif(' ~ value ~ ', ' ~ unirank.sentinel_of('category') ~ ')' -%}
        {%- endif %}
        when {{ rows }}.task_type = '{{ rule.canvas }}' then {{ unirank.sentinel_coalesce(value, column) }}
        {% endfor -%}
        else {{ rows }}.{{ column.name }}
    end as {{ column.name }},
    {%- else -%}
    {{ rows }}.{{ column.name }},
    {%- endif %}
    {% endfor -%}
    {% for column in columns_after -%}
    {{ rows }}.{{ column }}{% if not loop.last %},{% endif %}
    {% endfor %}
from {{ rows }}
{% if by_source -%}
left join {{ ref('int_items') }} as imputed_source_items
    on {{ rows }}.source_item_id = imputed_source_items.item_id
{% endif -%}
{% if top_canvases -%}
left join (
    {{ unirank.user_top_categories(rows, top_canvases) }}
) as imputed_top_categories
    on {{ rows }}.task_type = imputed_top_categories.task_type
    and {{ rows }}.request_id = imputed_top_categories.request_id
{% endif -%}
{% endmacro %}

{% macro user_top_categories(rows, canvases) %}
  {#- Per (task_type, request_id) of `canvases` in `rows` with a known user: the category the
      user engaged with most strictly before requested_at; ties go to the smallest name. -#}
select
    task_type,
    request_id,
    category
from (
    select
        requests.task_type,
        requests.request_id,
        history.item_category as category,
        row_number() over (
            partition by requests.task_type, requests.request_id
            order by count(*) desc, history.item_category
        ) as category_rank
    from (
        select distinct
            task_type,
            request_id,
            user_id,
            requested_at
        from {{ rows }}
        where task_type in ({{ unirank.unirank_quoted(canvases) }})
            and user_id <> {{ unirank.sentinel_of('user_id') }}
    ) as requests
    inner join {{ ref('int_engagement_history') }} as history
        on requests.user_id = history.user_id
        and history.engaged_at < requests.requested_at
    where history.item_category is not null
    group by requests.task_type, requests.request_id, history.item_category
) as ranked
where category_rank = 1
{% endmacro %}
