-- check: duplicate_questions
-- measures: share of MCQs that repeat a question already asked about the same clip (case and whitespace ignored)
-- requires: mcqs
-- warn: duplicate_share > 0.01
-- fail: duplicate_share > 0.05

-- [setup]
CREATE OR REPLACE TEMP TABLE question_repeats AS
SELECT clip_id, lower(regexp_replace(trim(question), '\s+', ' ', 'g')) AS normalised,
       count(*) AS copies, any_value(category) AS category, list(question_id ORDER BY question_id)[1:5] AS question_ids
FROM mcqs GROUP BY clip_id, normalised;

-- [summary]
SELECT category, count(*) FILTER (WHERE copies > 1) AS repeated_questions, sum(copies - 1) AS extra_copies
FROM question_repeats GROUP BY ALL ORDER BY extra_copies DESC, category;

-- [metric]
SELECT sum(copies - 1) / sum(copies) AS duplicate_share FROM question_repeats;

-- [examples]
SELECT clip_id, category, copies, normalised AS question, question_ids FROM question_repeats
WHERE copies > 1 ORDER BY copies DESC, clip_id LIMIT 50;
