{#
  The comment on every statement dbt runs (query-comment in dbt_project.yml): the dataset, month
  and Dagster run it serves, as the loader's own statements say them. Read from the environment
  the pipeline sets (see run_var), so the values never enter dbt's parse.
#}
{% macro run_comment(node) -%}
  {%- set run = fromjson(env_var('PIPELINE_DBT_VARS', '{}')) -%}
  pipeline dataset={{ var('dataset', run.get('dataset', 'all')) }} month={{ var('month', run.get('month', 'all')) }} run_id={{ var('run_id', run.get('run_id', 'none')) }} node={{ node.unique_id if node else 'none' }}
{%- endmacro %}
