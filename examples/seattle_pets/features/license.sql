-- What the licence form says before the species box: the pet's name and the owner's ZIP code.
SELECT
    license_number,
    coalesce(lower(trim(animal_name)), 'missing') AS name,
    length(coalesce(animal_name, ''))::DOUBLE AS name_length,
    coalesce(zip_code, 'missing') AS zip_code
FROM validated
