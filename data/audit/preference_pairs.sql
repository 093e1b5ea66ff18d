-- check: preference_pairs
-- measures: preference pairs whose chosen answer equals the rejected one (case and surrounding spaces ignored)
-- requires: preferences
-- fail: identical_pairs > 0

-- [summary]
SELECT error_type, count(*) AS pairs,
       count(*) FILTER (WHERE lower(trim(chosen)) = lower(trim(rejected))) AS identical
FROM preferences GROUP BY ALL ORDER BY pairs DESC, error_type;

-- [metric]
SELECT count(*) AS identical_pairs FROM preferences WHERE lower(trim(chosen)) = lower(trim(rejected));

-- [examples]
SELECT pair_id, clip_id, question, chosen, rejected, error_type FROM preferences
WHERE lower(trim(chosen)) = lower(trim(rejected)) ORDER BY pair_id LIMIT 50;
