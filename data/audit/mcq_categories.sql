-- check: mcq_categories
-- measures: MCQs per category (MR LM CM MO AO RC, basic reasoning future); max_category_share = the largest category's share
-- requires: mcqs
-- warn: max_category_share > 0.5
-- fail: max_category_share > 0.9

-- [setup]
CREATE OR REPLACE TEMP TABLE category_counts AS
SELECT category, count(*) AS questions, count(DISTINCT clip_id) AS clips FROM mcqs GROUP BY ALL;

-- [summary]
SELECT category, questions, round(questions / sum(questions) OVER (), 3) AS share, clips
FROM category_counts ORDER BY questions DESC, category;

-- [metric]
SELECT max(questions) / sum(questions) AS max_category_share FROM category_counts;
