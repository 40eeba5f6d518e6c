{{ require_columns(source('raw', 'flights'), [
    'flight_date', 'carrier', 'flight', 'origin', 'dest', 'distance', 'dep_delay', 'fare',
    'cancelled', 'time_hour',
]) }}

select
    _month as month,
    flight_date,
    carrier,
    flight,
    origin,
    dest,
    distance,
    dep_delay,
    fare,
    cancelled,
    time_hour as departed_at,
    _source_file as source_file,
    _line_number as source_line
from {{ source('raw', 'flights') }}
