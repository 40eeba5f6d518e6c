{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month') }}

select
    month,
    flight_date,
    count(*) as flights,
    sum(case when cancelled then 1 else 0 end) as cancelled_flights,
    avg(dep_delay) as avg_dep_delay_minutes,
    sum(distance) as total_distance,
    sum(fare) as revenue
from {{ ref('stg_flights') }}
{{ month_filter() }}
group by month, flight_date
