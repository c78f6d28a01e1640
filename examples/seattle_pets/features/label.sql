-- cat: the licensed animal is a cat (dogs, goats and pigs are not).
SELECT
    license_number,
    species = 'Cat' AS cat
FROM validated
