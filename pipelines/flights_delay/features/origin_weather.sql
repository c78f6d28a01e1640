-- Origin weather as of one hour before scheduled departure: the latest observation at or
-- before that cutoff (point-in-time as-of join), so nothing after departure can leak in.
SELECT
    v.flight_id,
    w.temp AS origin_temp,
    w.humid AS origin_humid,
    w.wind_speed AS origin_wind_speed,
    w.wind_gust AS origin_wind_gust,
    w.precip AS origin_precip,
    w.pressure AS origin_pressure,
    w.visib AS origin_visib,
    date_diff('minute', w.time_hour, v.sched_dep_at)::DOUBLE AS weather_age_minutes
FROM validated AS v
ASOF LEFT JOIN weather AS w
    ON v.origin = w.origin
    AND v.sched_dep_at - INTERVAL 1 HOUR >= w.time_hour
