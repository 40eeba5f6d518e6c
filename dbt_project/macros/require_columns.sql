{#
  Stop a model that reads a dataset's raw table when the dataset's spec lacks a column it needs,
  with a message that names them, instead of the database's "column not found" half way through
  the SQL. A dataset of your own named like a bundled one (say, your own `flights`) gets the
  bundled models too. Names are compared case-insensitively: Snowflake folds them to upper case.
  Checked only when the model runs (`execute`): parsing has no warehouse to ask.
#}
{% macro require_columns(source_relation, columns) -%}
  {%- if execute -%}
    {%- set present = adapter.get_columns_in_relation(source_relation) | map(attribute='name') | map('lower') | list -%}
    {%- set dataset = source_relation.identifier | lower -%}
    {%- set table = (source_relation.schema ~ '.' ~ dataset) | lower -%}
    {%- if not present -%}
      {{ exceptions.raise_compiler_error(model.name ~ " reads " ~ table ~ ", which does not exist: load a month of " ~ dataset ~ " first") }}
    {%- endif -%}
    {%- set missing = columns | map('lower') | reject('in', present) | list -%}
    {%- if missing -%}
      {{ exceptions.raise_compiler_error(model.name ~ " needs column(s) " ~ missing | join(', ') ~ " in " ~ table ~ ": add them to the " ~ dataset ~ " spec (" ~ dataset ~ ".yaml in " ~ env_var('PIPELINE_DATASETS_DIR', 'pipeline/datasets') ~ ")") }}
    {%- endif -%}
  {%- endif -%}
{%- endmacro %}
