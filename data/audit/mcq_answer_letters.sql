-- check: mcq_answer_letters
-- measures: answer-letter balance of four-option questions, which the writers place by a per-shard rotation (within 2 points by construction; removing clips afterwards, e.g. dedup --apply, can move it a little, hence warn above 2 and fail above 4); letter_gap_points = how many percentage points the farthest letter's share lies from 25% (a dataset under 40 such questions is allowed one question of slack per letter); per-category gaps are listed in the summary
-- requires: mcqs
-- warn: letter_gap_points > 2
-- fail: letter_gap_points > 4

-- [setup]
-- One pass over the questions; the summary and the metric read these few counts.
CREATE OR REPLACE TEMP TABLE answer_counts AS
SELECT len(options) AS options, category, answer, count(*) AS questions FROM mcqs GROUP BY ALL;

-- [summary]
WITH overall AS (SELECT options, 'all' AS category, answer, sum(questions) AS questions FROM answer_counts GROUP BY ALL)
SELECT options, category, answer, questions,
       round(100.0 * questions / sum(questions) OVER (PARTITION BY options, category), 1) AS share_points
FROM (SELECT * FROM overall UNION ALL SELECT * FROM answer_counts)
ORDER BY options, category = 'all' DESC, category, answer;

-- [metric]
WITH letter_counts AS (
    SELECT c.category, l.letter, coalesce(sum(a.questions), 0) AS n
    FROM (SELECT DISTINCT category FROM answer_counts WHERE options = 4) c
    CROSS JOIN (VALUES ('A'), ('B'), ('C'), ('D')) l(letter)
    LEFT JOIN answer_counts a ON a.options = 4 AND a.category = c.category AND a.answer = l.letter
    GROUP BY ALL
), overall AS (SELECT letter, sum(n) AS n FROM letter_counts GROUP BY letter),
stats AS (SELECT sum(n) AS total, max(abs(n - (SELECT sum(n) FROM overall) / 4.0)) AS dev FROM overall),
categories AS (SELECT category, max(abs(n - total / 4.0)) / max(total) * 100 AS gap, max(total) AS total
               FROM (SELECT *, sum(n) OVER (PARTITION BY category) AS total FROM letter_counts) GROUP BY category)
SELECT CASE WHEN coalesce(total, 0) = 0 THEN NULL
            WHEN total >= 40 THEN dev / total * 100
            ELSE greatest(dev - 1, 0) / total * 100 END AS letter_gap_points,
       (SELECT 'categories more than 2 points off: ' ||
               string_agg(category || ' ' || round(gap, 1) || ' (' || total || ' questions)', ', ' ORDER BY category)
        FROM categories WHERE total >= 40 AND gap > 2) AS note
FROM stats;
