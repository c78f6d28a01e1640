-- hot: the day's maximum temperature reached 90 degrees Fahrenheit.
SELECT
    day_id,
    tmax >= 90 AS hot
FROM validated
