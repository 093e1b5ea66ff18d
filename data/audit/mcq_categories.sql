-- check: mcq_categories
-- measures: MCQs per category (MR LM CM MO AO RC, basic reasoning future); max_category_share = the largest category's share
-- requires: mcqs
-- warn: max_category_share > 0.5
-- fail: max_category_share > 0.9

-- [summary]
-- mcq_category_counts (category, questions, clips): a helper table engine/audit.py builds once per audit
SELECT category, questions, round(questions / sum(questions) OVER (), 3) AS share, clips
FROM mcq_category_counts ORDER BY questions DESC, category;

-- [metric]
SELECT max(questions) / sum(questions) AS max_category_share FROM mcq_category_counts;
