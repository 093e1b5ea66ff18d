-- check: duplicate_questions
-- measures: share of MCQs that repeat a question already asked about the same clip (case and whitespace ignored)
-- requires: mcqs
-- warn: duplicate_share > 0.01
-- fail: duplicate_share > 0.05
-- random weights: a random-weight question writer repeats its few noise questions

-- [setup]
-- The regex only runs on questions with runs of whitespace: it is the costly part on a million rows.
CREATE OR REPLACE TEMP TABLE question_repeats AS
SELECT clip_id, lower(CASE WHEN contains(question, '  ') OR contains(question, chr(9)) OR contains(question, chr(10))
                           THEN regexp_replace(trim(question), '\s+', ' ', 'g') ELSE trim(question) END) AS normalised,
       count(*) AS copies, any_value(category) AS category
FROM mcqs GROUP BY ALL;

-- [summary]
SELECT category, count(*) FILTER (WHERE copies > 1) AS repeated_questions, sum(copies - 1) AS extra_copies
FROM question_repeats GROUP BY ALL ORDER BY extra_copies DESC, category;

-- [metric]
SELECT sum(copies - 1) / sum(copies) AS duplicate_share FROM question_repeats;

-- [examples]
WITH top AS (SELECT * FROM question_repeats WHERE copies > 1 ORDER BY copies DESC, clip_id, normalised LIMIT 50)
SELECT t.clip_id, t.category, t.copies, t.normalised AS question, list(m.question_id ORDER BY m.question_id)[1:5] AS question_ids
FROM top t JOIN mcqs m ON m.clip_id = t.clip_id
 AND lower(regexp_replace(trim(m.question), '\s+', ' ', 'g')) = t.normalised
GROUP BY ALL ORDER BY t.copies DESC, t.clip_id, question;
