{#
  Restrict a model to the month Dagster is building (--vars '{"month": "YYYY-MM"}').
  Without the var (a full `dbt build` by hand) every month is built. The filter applies on the
  first run too, so a month whose blocking check failed never reaches a mart by way of a later one.
#}
{% macro month_filter(column='month') -%}
  {%- if var('month', none) is not none -%}
    where {{ column }} = '{{ var("month") }}'
  {%- endif -%}
{%- endmacro %}
