-- check: mcq_answer_letters
-- measures: answer-letter balance; letter_z = how many binomial standard deviations the most frequent letter's count lies above uniform (total/options), among questions with the same number of options, so small datasets are not failed for chance imbalance
-- requires: mcqs
-- warn: letter_z > 3
-- fail: letter_z > 4

-- [summary]
WITH letters AS (SELECT len(options) AS options, answer, count(*) AS questions FROM mcqs GROUP BY ALL)
SELECT options, answer, questions, round(questions / sum(questions) OVER (PARTITION BY options), 3) AS share
FROM letters ORDER BY options, answer;

-- [metric]
WITH letters AS (SELECT len(options) AS options, answer, count(*) AS n FROM mcqs GROUP BY ALL)
SELECT coalesce(max((n - total / options) / sqrt(total * (1.0 / options) * (1 - 1.0 / options))), 0) AS letter_z
FROM (SELECT *, sum(n) OVER (PARTITION BY options) AS total FROM letters);
