-- check: token_cost
-- measures: token usage and estimated cost per agent and model, in USD from data/audit/prices.yaml (per 1M tokens; unlisted or local models cost 0)
-- requires:
-- warn: total_cost_usd > 100
-- fail: total_cost_usd > 1000

-- [summary]
SELECT l.agent, l.model, count(*) AS rows, sum(coalesce(l.prompt_tokens, 0)) AS prompt_tokens,
       sum(coalesce(l.completion_tokens, 0)) AS completion_tokens,
       round(sum(coalesce(l.prompt_tokens, 0) * coalesce(p.input_per_1m, 0)
             + coalesce(l.completion_tokens, 0) * coalesce(p.output_per_1m, 0)) / 1e6, 4) AS cost_usd
FROM lineage l LEFT JOIN prices p ON p.model = l.model
GROUP BY ALL ORDER BY cost_usd DESC, prompt_tokens DESC, l.agent, l.model;

-- [metric]
SELECT coalesce(sum(coalesce(l.prompt_tokens, 0) * coalesce(p.input_per_1m, 0)
                    + coalesce(l.completion_tokens, 0) * coalesce(p.output_per_1m, 0)) / 1e6, 0) AS total_cost_usd
FROM lineage l LEFT JOIN prices p ON p.model = l.model;
