-- A view: always current, even when a blocking check stops the rest of a month's models.
{{ config(materialized='view') }}

-- Data quality per dataset month, from the load ledger: the latest attempt and how it went.
with attempts as (
    select
        *,
        row_number() over (partition by dataset, month order by finished_at desc) as recency,
        -- A purge is a ledger row, not an attempt to load.
        count(case when status <> 'purged' then 1 end) over (partition by dataset, month)
            as attempts
    from {{ source('pipeline', 'load_ledger') }}
)

select
    dataset,
    month,
    status as last_status,
    attempts,
    source_file,
    file_size,
    rows_read,
    rows_loaded,
    rows_rejected,
    case when rows_read > 0 then rows_rejected * 1.0 / rows_read when rows_read = 0 then 0 end
        as reject_ratio,
    finished_at as last_attempt_at,
    error as last_error
from attempts
where recency = 1
