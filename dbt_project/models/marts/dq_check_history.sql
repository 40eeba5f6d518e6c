-- A view: always current, even when a blocking check stops the rest of a month's models.
{{ config(materialized='view') }}

-- The quality history per dataset month and check: the latest verdict and how many runs failed it.
with verdicts as (
    select
        *,
        row_number() over (
            partition by dataset, month, check_name order by checked_at desc
        ) as recency,
        cast(sum(case when passed then 0 else 1 end) over (
            partition by dataset, month, check_name
        ) as bigint) as failed_runs  -- a sum is HUGEINT on DuckDB; marts.yml says bigint
    from {{ source('pipeline', 'check_results') }}
)

select
    dataset,
    month,
    check_name,
    severity,
    passed as last_passed,
    observed as last_observed,
    threshold,
    summary as last_summary,
    failed_runs,
    checked_at as last_checked_at
from verdicts
where recency = 1
