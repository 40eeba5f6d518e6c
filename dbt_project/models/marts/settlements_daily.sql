{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month') }}
{{ require_columns(source('raw', 'settlements'), ['settlement_date', 'amount', 'fee']) }}

-- Settlements per business day with the dataset's 4-4-5 fiscal year, quarter and period.
with fiscal_days as (
    {{ fiscal_days() }}
)

select
    settlements._month as month,
    settlements.settlement_date,
    {{ fiscal_columns() }},
    count(*) as batches,
    sum(settlements.amount) as amount,
    sum(settlements.fee) as fees
from {{ source('raw', 'settlements') }} as settlements
left join fiscal_days on fiscal_days.day = settlements.settlement_date
{{ month_filter('settlements._month') }}
group by
    settlements._month,
    settlements.settlement_date,
    {{ fiscal_columns() }}
