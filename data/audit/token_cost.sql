-- check: token_cost
-- measures: token usage and estimated cost per agent and model, in USD from data/audit/prices.yaml (per 1M tokens; unlisted or local models cost 0)
-- requires:
-- warn: total_cost_usd > 100
-- fail: total_cost_usd > 1000

-- [setup]
-- Tokens per agent and model in one pass over the lineage view; the prices apply per model.
CREATE OR REPLACE TEMP TABLE token_usage AS
SELECT agent, model, count(*) AS rows, sum(coalesce(prompt_tokens, 0)) AS prompt_tokens,
       sum(coalesce(completion_tokens, 0)) AS completion_tokens
FROM lineage GROUP BY ALL;

-- [summary]
SELECT u.agent, u.model, u.rows, u.prompt_tokens, u.completion_tokens,
       round((u.prompt_tokens * coalesce(p.input_per_1m, 0) + u.completion_tokens * coalesce(p.output_per_1m, 0)) / 1e6, 4)
           AS cost_usd
FROM token_usage u LEFT JOIN prices p ON p.model = u.model
ORDER BY cost_usd DESC, u.prompt_tokens DESC, u.agent, u.model;

-- [metric]
SELECT coalesce(sum(u.prompt_tokens * coalesce(p.input_per_1m, 0) + u.completion_tokens * coalesce(p.output_per_1m, 0)) / 1e6, 0)
           AS total_cost_usd
FROM token_usage u LEFT JOIN prices p ON p.model = u.model;
