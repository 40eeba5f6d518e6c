{#
  Restrict a model to the month Dagster is building (`run_var('month')`; by hand, --vars
  '{"month": "YYYY-MM"}'). Without it (a full `dbt build` by hand) every month is built. The
  filter applies on the first run too, so a month whose blocking check failed never reaches a
  mart by way of a later one.
#}
{% macro month_filter(column='month') -%}
  {%- set month = run_var('month') -%}
  {%- if month is not none -%}
    where {{ column }} = '{{ month }}'
  {%- endif -%}
{%- endmacro %}
