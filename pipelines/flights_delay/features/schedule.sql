-- The flight's own schedule: all known when the flight is booked.
SELECT
    flight_id,
    carrier,
    origin,
    dest,
    distance::DOUBLE AS distance,
    hour::DOUBLE AS sched_hour,
    ((sched_dep_time // 100) * 60 + sched_dep_time % 100)::DOUBLE AS sched_minute_of_day,
    dayofweek(make_date(year, month, day))::VARCHAR AS sched_weekday,
    month::DOUBLE AS sched_month
FROM validated
