-- affected: the strike changed the flight (precautionary landing, aborted take-off, engine shut
-- down or other); no reported effect is not.
SELECT
    row_id,
    coalesce(effect, 'None') <> 'None' AS affected
FROM validated
