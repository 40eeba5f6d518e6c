{{ config(meta={'dagster': {'ref': {'name': 'dq_load_history'}}}) }}
-- depends_on: {{ ref('dq_load_history') }}
-- (dagster-dbt makes a test an asset check of the model it is downstream of: without the line
-- above it ran as an observation no check shows.)

-- Every published month holds exactly what its ledger row counted, all from that load: the rows
-- and rejects in the raw tables (count(*), by _load_id) equal the ledger's rows_loaded and
-- rows_rejected, those add up to the lines counted in the file, and no row of another load (or of
-- a purged month) is left. The datasets are read from the ledger when the test runs.
{% set datasets = [] %}
{% if execute %}
    {% set found = run_query(
        "select distinct dataset from " ~ source('pipeline', 'load_ledger') ~ " where status = 'loaded'"
    ) %}
    {% set datasets = found.columns[0].values() %}
{% endif %}

with ledger as (
    select
        dataset, month, load_id, status, rows_read, rows_loaded, rows_rejected,
        row_number() over (partition by dataset, month order by finished_at desc) as recency
    from {{ source('pipeline', 'load_ledger') }}
    where status in ('loaded', 'purged')
),

served as (
    select * from ledger where recency = 1 and status = 'loaded'
),

published as (
    {% for dataset in datasets %}
    select '{{ dataset }}' as dataset, _month as month, _load_id as load_id,
        count(*) as published_rows, 0 as published_rejects
    from raw.{{ dataset }} group by _month, _load_id
    union all
    select '{{ dataset }}', _month, _load_id, 0, count(*)
    from raw.{{ dataset }}_rejects group by _month, _load_id
    union all
    {% endfor %}
    select null, null, null, 0, 0 where 1 = 0
),

published_by_load as (
    select dataset, month, load_id,
        sum(published_rows) as published_rows, sum(published_rejects) as published_rejects
    from published group by dataset, month, load_id
)

select
    coalesce(s.dataset, p.dataset) as dataset,
    coalesce(s.month, p.month) as month,
    s.load_id as ledger_load_id,
    p.load_id as published_load_id,
    s.rows_read, s.rows_loaded, s.rows_rejected,
    p.published_rows, p.published_rejects
from served s
full outer join published_by_load p
    on p.dataset = s.dataset and p.month = s.month and p.load_id = s.load_id
where s.load_id is null
    or p.load_id is null and s.rows_loaded + s.rows_rejected > 0
    or s.rows_read <> s.rows_loaded + s.rows_rejected
    or s.rows_loaded <> coalesce(p.published_rows, 0)
    or s.rows_rejected <> coalesce(p.published_rejects, 0)
