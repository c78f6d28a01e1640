-- What is known when the sample is taken: the patient, the clinic and how the test was ordered.
SELECT
    row_id,
    age::DOUBLE AS age,
    gender,
    clinic_name,
    demo_group,
    drive_thru_ind::VARCHAR AS drive_thru,
    orderset::VARCHAR AS orderset,
    coalesce(payor_group, 'missing') AS payor_group,
    coalesce(patient_class, 'missing') AS patient_class,
    dayofweek(test_day)::DOUBLE AS day_of_week
FROM validated
