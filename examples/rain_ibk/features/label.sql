-- wet: the observed 3-day accumulated precipitation is over 0.1 mm.
SELECT
    day_id,
    rain > 0.1 AS wet
FROM validated
