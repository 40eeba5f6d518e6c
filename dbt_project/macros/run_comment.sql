{#
  The comment on every statement dbt runs (query-comment in dbt_project.yml): the dataset, month
  and Dagster run it serves, as the loader's own statements say them. Read from the environment
  the pipeline sets, so the values never enter dbt's parse. Not through run_var: dbt renders the
  query comment in its QueryHeaderContext, which has no `execute` (only a node's context does),
  so run_var would never look at the environment here.
#}
{% macro run_comment(node) -%}
  {%- set run = fromjson(env_var('PIPELINE_DBT_VARS', '{}')) -%}
  pipeline dataset={{ var('dataset', run.get('dataset', 'all')) }} month={{ var('month', run.get('month', 'all')) }} run_id={{ var('run_id', run.get('run_id', 'none')) }} node={{ node.unique_id if node else 'none' }}
{%- endmacro %}
