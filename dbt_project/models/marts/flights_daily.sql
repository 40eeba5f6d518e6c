{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month') }}

with fiscal_days as (
    {{ fiscal_days() }}
)

select
    flights.month,
    flights.flight_date,
    {{ fiscal_columns() }},
    count(*) as flights,
    cast(sum(case when flights.cancelled then 1 else 0 end) as bigint) as cancelled_flights,
    avg(flights.dep_delay) as avg_dep_delay_minutes,
    sum(flights.distance) as total_distance,
    sum(flights.fare) as revenue
from {{ ref('stg_flights') }} as flights
left join fiscal_days on fiscal_days.day = flights.flight_date
{{ month_filter('flights.month') }}
group by
    flights.month,
    flights.flight_date,
    {{ fiscal_columns() }}
