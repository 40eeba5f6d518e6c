{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month') }}

select
    month,
    sum(flights) as flights,
    count(*) as active_days,
    sum(cancelled_flights) as cancelled_flights,
    sum(cancelled_flights) * 1.0 / sum(flights) as cancelled_share,
    sum(avg_dep_delay_minutes * flights) / sum(flights) as avg_dep_delay_minutes,
    sum(revenue) as revenue
from {{ ref('flights_daily') }}
{{ month_filter() }}
group by month
