-- check: token_cost
-- measures: token usage and estimated cost per agent and model, in USD from data/audit/prices.yaml (per 1M tokens; unlisted or local models cost 0)
-- requires:
-- warn: total_cost_usd > 100
-- fail: total_cost_usd > 1000

-- [summary]
-- lineage_counts (rows and tokens per table, agent, model, model_revision, prompt_version): a helper
-- table engine/audit.py builds once per audit; the prices apply per model
WITH usage AS (SELECT agent, model, sum(rows) AS rows, sum(prompt_tokens) AS prompt_tokens,
                      sum(completion_tokens) AS completion_tokens FROM lineage_counts GROUP BY ALL)
SELECT u.agent, u.model, u.rows, u.prompt_tokens, u.completion_tokens,
       round((u.prompt_tokens * coalesce(p.input_per_1m, 0) + u.completion_tokens * coalesce(p.output_per_1m, 0)) / 1e6, 4)
           AS cost_usd
FROM usage u LEFT JOIN prices p ON p.model = u.model
ORDER BY cost_usd DESC, u.prompt_tokens DESC, u.agent, u.model;

-- [metric]
SELECT coalesce(sum(u.prompt_tokens * coalesce(p.input_per_1m, 0) + u.completion_tokens * coalesce(p.output_per_1m, 0)) / 1e6, 0)
           AS total_cost_usd
FROM lineage_counts u LEFT JOIN prices p ON p.model = u.model;
