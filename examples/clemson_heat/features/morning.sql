-- What is known on the morning of the day: its minimum (the night's low), the previous day's
-- maximum and minimum, and the date. Never the day's own maximum.
SELECT
    day_id,
    tmin::DOUBLE AS tmin,
    tmax_prev::DOUBLE AS tmax_prev,
    tmin_prev::DOUBLE AS tmin_prev,
    dayofyear(day_start)::DOUBLE AS day_of_year
FROM validated
