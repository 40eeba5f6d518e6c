{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month') }}

-- The mean delay is taken over the month's flights with a recorded delay, not from the daily
-- means: weighting those by all flights counted the flights without one.
with delays as (
    select month, avg(dep_delay) as avg_dep_delay_minutes
    from {{ ref('stg_flights') }}
    {{ month_filter() }}
    group by month
)

select
    daily.month,
    cast(sum(daily.flights) as bigint) as flights,  -- a sum is HUGEINT on DuckDB
    count(*) as active_days,
    cast(sum(daily.cancelled_flights) as bigint) as cancelled_flights,
    sum(daily.cancelled_flights) * 1.0 / sum(daily.flights) as cancelled_share,
    max(delays.avg_dep_delay_minutes) as avg_dep_delay_minutes,
    sum(daily.revenue) as revenue
from {{ ref('flights_daily') }} as daily
left join delays on delays.month = daily.month
{{ month_filter('daily.month') }}
group by daily.month
