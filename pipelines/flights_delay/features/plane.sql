-- Plane attributes from the registry, joined by tail number.
SELECT
    v.flight_id,
    v.tailnum,
    (v.year - p.year)::DOUBLE AS plane_age,
    p.seats::DOUBLE AS plane_seats,
    p.engines::DOUBLE AS plane_engines,
    p.manufacturer AS plane_manufacturer
FROM validated AS v
LEFT JOIN planes AS p ON p.tailnum = v.tailnum
