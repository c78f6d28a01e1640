-- late: arrival delay over 15 minutes, or no arrival delay at all (cancelled or diverted).
SELECT
    flight_id,
    coalesce(arr_delay > 15, TRUE) AS late
FROM validated
