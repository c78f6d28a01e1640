-- What is known of the strike when it happens: the aircraft, the flight phase, height, speed,
-- sky and the birds; the month from the date. Not the effect or the remarks (written after).
SELECT
    row_id,
    coalesce(operator, 'missing') AS operator,
    coalesce(atype, 'missing') AS aircraft,
    coalesce(phase_of_flt, 'missing') AS phase,
    ac_mass::DOUBLE AS mass_class,
    num_engs::DOUBLE AS engines,
    coalesce(time_of_day, 'missing') AS time_of_day,
    height::DOUBLE AS height,
    speed::DOUBLE AS speed,
    coalesce(sky, 'missing') AS sky,
    coalesce(species, 'missing') AS species,
    coalesce(birds_struck, 'missing') AS birds_struck,
    month(strike_day)::DOUBLE AS month
FROM validated
