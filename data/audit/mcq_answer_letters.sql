-- check: mcq_answer_letters
-- measures: answer-letter balance; letter_excess = how far the most frequent letter's share is above uniform (1/options) among questions with the same number of options
-- requires: mcqs
-- warn: letter_excess > 0.1
-- fail: letter_excess > 0.25

-- [summary]
WITH letters AS (SELECT len(options) AS options, answer, count(*) AS questions FROM mcqs GROUP BY ALL)
SELECT options, answer, questions, round(questions / sum(questions) OVER (PARTITION BY options), 3) AS share
FROM letters ORDER BY options, answer;

-- [metric]
WITH letters AS (SELECT len(options) AS options, answer, count(*) AS n FROM mcqs GROUP BY ALL)
SELECT max(n / total - 1.0 / options) AS letter_excess
FROM (SELECT *, sum(n) OVER (PARTITION BY options) AS total FROM letters);
