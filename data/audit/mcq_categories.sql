-- check: mcq_categories
-- measures: MCQs per category (MR LM CM MO AO RC, basic reasoning future); max_category_share = the largest category's share
-- requires: mcqs
-- warn: max_category_share > 0.5
-- fail: max_category_share > 0.9

-- [summary]
SELECT category, count(*) AS questions, round(count(*) / sum(count(*)) OVER (), 3) AS share,
       count(DISTINCT clip_id) AS clips
FROM mcqs GROUP BY ALL ORDER BY questions DESC, category;

-- [metric]
SELECT max(n) / sum(n) AS max_category_share FROM (SELECT count(*) AS n FROM mcqs GROUP BY category);
