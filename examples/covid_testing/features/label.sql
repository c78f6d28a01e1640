-- positive: the SARS-CoV-2 PCR test came back positive (negative and invalid results are not).
SELECT
    row_id,
    result = 'positive' AS positive
FROM validated
