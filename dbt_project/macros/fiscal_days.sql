{#
  The days of the month Dagster is building with their fiscal year, quarter and period, as a
  table to join on the date (`run_var('fiscal_days')`: [{"day": "2024-03-01", "fiscal_year": 2024,
  ...}], computed by pipeline/fiscal.py from the dataset's spec). Plain selects joined by
  union all, so every warehouse runs it. Without the var (dbt by hand) the table is empty and the
  fiscal columns are null.
#}
{% macro fiscal_days() -%}
  {%- set days = run_var('fiscal_days', []) -%}
  {%- for day in days %}
    select
        cast('{{ day.day }}' as date) as day,
        {{ day.fiscal_year | int }} as fiscal_year,
        {{ day.fiscal_quarter | int }} as fiscal_quarter,
        {{ day.fiscal_period | int }} as fiscal_period
    {% if not loop.last %}union all{% endif %}
  {%- else %}
    select
        cast(null as date) as day,
        cast(null as integer) as fiscal_year,
        cast(null as integer) as fiscal_quarter,
        cast(null as integer) as fiscal_period
    where 1 = 0
  {%- endfor %}
{%- endmacro %}

{# The fiscal columns of the joined `fiscal_days` table, for a model's select and group by. #}
{% macro fiscal_columns() -%}
    fiscal_days.fiscal_year,
    fiscal_days.fiscal_quarter,
    fiscal_days.fiscal_period
{%- endmacro %}
