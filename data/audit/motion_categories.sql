-- check: motion_categories
-- measures: questions per MotionBench category (MR LM CM MO AO RC, all six listed even when empty); min_category_share = the rarest category's share of the motion questions (a category under 10% is thin)
-- requires: mcqs
-- warn: min_category_share < 0.1

-- [setup]
-- mcq_category_counts (category, questions, clips): a helper table engine/audit.py builds once per audit
CREATE OR REPLACE TEMP TABLE motion_category_counts AS
SELECT c.category, coalesce(m.questions, 0) AS questions, coalesce(m.clips, 0) AS clips
FROM (VALUES ('MR'), ('LM'), ('CM'), ('MO'), ('AO'), ('RC')) c(category)
LEFT JOIN mcq_category_counts m USING (category);

-- [summary]
SELECT category, questions, round(questions / greatest(1, sum(questions) OVER ()), 3) AS share, clips
FROM motion_category_counts ORDER BY questions DESC, category;

-- [metric]
SELECT coalesce(min(questions) / nullif(sum(questions), 0), 0) AS min_category_share,
       'thin: ' || string_agg(category || ' ' || questions || '/' || total, ', ' ORDER BY questions, category)
           FILTER (WHERE questions < 0.1 * total) AS note
FROM (SELECT *, sum(questions) OVER () AS total FROM motion_category_counts);

-- [examples]
SELECT category, questions, round(questions / greatest(1, sum(questions) OVER ()), 3) AS share
FROM motion_category_counts QUALIFY share < 0.1 ORDER BY questions, category;
