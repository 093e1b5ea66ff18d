-- check: duplicate_questions
-- measures: share of MCQs that repeat a question already asked about the same clip (case and whitespace ignored)
-- requires: mcqs
-- warn: duplicate_share > 0.01
-- fail: duplicate_share > 0.05
-- random weights: a random-weight question writer repeats its few noise questions

-- [setup]
-- Only the repeated (clip, question) pairs are kept, grouped by one 64-bit hash of the clip id and
-- the normalised text (two of a million different pairs share it with odds of about 3 in 10^8):
-- grouping a million rows by the texts themselves was most of the audit's time, by two hashes a
-- fifth more than by one. The regex only runs on questions with runs of whitespace, in a branch of
-- their own (inside a CASE it slowed every row).
CREATE OR REPLACE TEMP MACRO odd_whitespace(q) AS contains(q, '  ') OR contains(q, chr(9)) OR contains(q, chr(10));
CREATE OR REPLACE TEMP MACRO normalised_question(q) AS
    lower(CASE WHEN odd_whitespace(q) THEN regexp_replace(trim(q), '\s+', ' ', 'g') ELSE trim(q) END);
CREATE OR REPLACE TEMP TABLE question_repeats AS
WITH keyed AS (
    SELECT category, hash(clip_id, lower(trim(question))) AS pair_key FROM mcqs
    WHERE NOT coalesce(odd_whitespace(question), false)
    UNION ALL
    SELECT category, hash(clip_id, normalised_question(question)) FROM mcqs WHERE odd_whitespace(question)
)
SELECT pair_key, count(*) AS copies, any_value(category) AS category
FROM keyed GROUP BY ALL HAVING count(*) > 1;

-- [summary]
SELECT c.category, count(r.copies) AS repeated_questions, coalesce(sum(r.copies - 1), 0) AS extra_copies
FROM (SELECT DISTINCT category FROM mcqs) c LEFT JOIN question_repeats r USING (category)
GROUP BY ALL ORDER BY extra_copies DESC, c.category;

-- [metric]
SELECT coalesce(sum(copies - 1), 0) / (SELECT count(*) FROM mcqs) AS duplicate_share FROM question_repeats;

-- [examples]
WITH candidates AS (
    SELECT clip_id, normalised_question(question) AS question, question_id FROM mcqs
    WHERE hash(clip_id, normalised_question(question)) IN (SELECT pair_key FROM question_repeats)
), repeats AS (
    SELECT clip_id, question, count(*) AS copies, list(question_id ORDER BY question_id)[1:5] AS question_ids
    FROM candidates GROUP BY ALL HAVING count(*) > 1
)
SELECT p.clip_id, r.category, p.copies, p.question, p.question_ids
FROM repeats p JOIN question_repeats r ON r.pair_key = hash(p.clip_id, p.question)
ORDER BY p.copies DESC, p.clip_id, p.question LIMIT 50;
