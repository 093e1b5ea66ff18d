-- check: lineage
-- measures: generated rows without lineage (agent, model, model_revision or prompt_version empty), over every table that has lineage columns (the lineage view)
-- requires:
-- fail: rows_without_lineage > 0

-- [setup]
-- One pass over the lineage view; the summary and the metric read its per-table counts.
CREATE OR REPLACE TEMP TABLE lineage_gaps AS
SELECT "table", count(*) AS rows,
       count(*) FILTER (WHERE coalesce(trim(agent), '') = '' OR coalesce(trim(model), '') = ''
                        OR coalesce(trim(model_revision), '') = '' OR coalesce(trim(prompt_version), '') = '') AS without_lineage
FROM lineage GROUP BY ALL;

-- [summary]
SELECT "table", rows, without_lineage FROM lineage_gaps ORDER BY "table";

-- [metric]
SELECT coalesce(sum(without_lineage), 0) AS rows_without_lineage FROM lineage_gaps;

-- [examples]
SELECT "table", row_id, agent, model, model_revision, prompt_version FROM lineage
WHERE coalesce(trim(agent), '') = '' OR coalesce(trim(model), '') = ''
   OR coalesce(trim(model_revision), '') = '' OR coalesce(trim(prompt_version), '') = ''
ORDER BY "table", row_id LIMIT 50;
