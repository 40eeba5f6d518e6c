-- A view: always current, even when a blocking check stops the rest of a month's models.
{{ config(materialized='view') }}

-- The quality history per dataset month and check: the latest verdict and how many runs failed it.
-- A purged month starts again: the verdicts on the rows it deleted no longer describe the month
-- (a purged month showed every check passed, with no data).
with purges as (
    select dataset, month, max(finished_at) as purged_at
    from {{ source('pipeline', 'load_ledger') }}
    where status = 'purged'
    group by dataset, month
),

verdicts as (
    select
        c.*,
        row_number() over (
            partition by c.dataset, c.month, c.check_name order by c.checked_at desc
        ) as recency,
        cast(sum(case when c.passed then 0 else 1 end) over (
            partition by c.dataset, c.month, c.check_name
        ) as bigint) as failed_runs  -- a sum is HUGEINT on DuckDB; marts.yml says bigint
    from {{ source('pipeline', 'check_results') }} c
    left join purges p on p.dataset = c.dataset and p.month = c.month
    where p.purged_at is null or c.checked_at > p.purged_at
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
