{#
  A value of the run Dagster is building (the month, its fiscal days, the dataset, the run id):
  from dbt's --vars when given (dbt by hand), else from PIPELINE_DBT_VARS, the JSON object the
  pipeline sets for its dbt runs (pipeline/project.py), read only when a node runs. Values that
  change every month do not go in --vars: dbt keys its saved parse on them, so every month's run
  parsed the whole project again.
#}
{% macro run_var(name, default=none) -%}
  {%- set value = var(name, none) -%}
  {%- if value is none and execute -%}
    {%- set value = fromjson(env_var('PIPELINE_DBT_VARS', '{}')).get(name) -%}
  {%- endif -%}
  {{ return(default if value is none else value) }}
{%- endmacro %}
