{{ config(meta={'dagster': {'ref': {'name': 'dq_load_history'}}}) }}

-- Every successful load accounts for each row it read: loaded or rejected, never lost.
select *
from {{ ref('dq_load_history') }}
where last_status = 'loaded' and rows_read <> rows_loaded + rows_rejected
