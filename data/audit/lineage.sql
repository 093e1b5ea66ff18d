-- check: lineage
-- measures: generated rows without lineage (agent, model, model_revision or prompt_version empty), over every table that has lineage columns (the lineage view)
-- requires:
-- fail: rows_without_lineage > 0

-- [summary]
-- lineage_counts (rows and tokens per table, agent, model, model_revision, prompt_version): a helper
-- table engine/audit.py builds once per audit
SELECT "table", sum(rows) AS rows,
       coalesce(sum(rows) FILTER (WHERE coalesce(trim(agent), '') = '' OR coalesce(trim(model), '') = ''
                                  OR coalesce(trim(model_revision), '') = '' OR coalesce(trim(prompt_version), '') = ''), 0)
           AS without_lineage
FROM lineage_counts GROUP BY ALL ORDER BY "table";

-- [metric]
SELECT coalesce(sum(rows), 0) AS rows_without_lineage FROM lineage_counts
WHERE coalesce(trim(agent), '') = '' OR coalesce(trim(model), '') = ''
   OR coalesce(trim(model_revision), '') = '' OR coalesce(trim(prompt_version), '') = '';

-- [examples]
SELECT "table", row_id, agent, model, model_revision, prompt_version FROM lineage
WHERE coalesce(trim(agent), '') = '' OR coalesce(trim(model), '') = ''
   OR coalesce(trim(model_revision), '') = '' OR coalesce(trim(prompt_version), '') = ''
ORDER BY "table", row_id LIMIT 50;
