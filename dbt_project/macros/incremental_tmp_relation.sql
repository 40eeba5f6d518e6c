{#
  Months built at once (`pipeline load --parallel`, a backfill with a pool limit above 1) each
  stage their rows in an incremental model's tmp relation. Snowflake's temporary tables are per
  session and never meet; a transient one (`temporary_tables` off, dbt_project.yml) lives in the
  schema, so the month goes into its name. dbt-snowflake's documented hook for runs that share a
  target schema.
#}
{% macro snowflake__resolve_incremental_tmp_relation(tmp_relation) %}
  {%- set month = run_var('month', 'all') | replace('-', '') -%}
  {{ return(tmp_relation.incorporate(path={"identifier": tmp_relation.identifier ~ "_" ~ month})) }}
{% endmacro %}
