-- The day's 11-member ensemble forecast, summarised; the season from the date. All known before
-- the day starts.
WITH members AS (
    SELECT
        day_id,
        day_start,
        [rainfc_1, rainfc_2, rainfc_3, rainfc_4, rainfc_5, rainfc_6,
         rainfc_7, rainfc_8, rainfc_9, rainfc_10, rainfc_11] AS fc
    FROM validated
)
SELECT
    day_id,
    list_avg(fc)::DOUBLE AS fc_mean,
    list_stddev_samp(fc)::DOUBLE AS fc_spread,
    (len(list_filter(fc, lambda x: x > 0)) / len(fc))::DOUBLE AS fc_wet_share,
    list_max(fc)::DOUBLE AS fc_max,
    dayofyear(day_start)::DOUBLE AS day_of_year,
    CASE
        WHEN month(day_start) IN (12, 1, 2) THEN 'DJF'
        WHEN month(day_start) IN (3, 4, 5) THEN 'MAM'
        WHEN month(day_start) IN (6, 7, 8) THEN 'JJA'
        ELSE 'SON'
    END AS season
FROM members
