{{ config(meta={'dagster': {'ref': {'name': 'flights_monthly'}}}) }}

-- The monthly mart adds up to the daily one.
select m.month
from {{ ref('flights_monthly') }} m
join (
    select month, sum(flights) as flights from {{ ref('flights_daily') }} group by month
) d on d.month = m.month
where m.flights <> d.flights
