-- check: stage_errors
-- measures: per stage, the share of the clips it was given (its commit records) that ended in stage_error or api_error (the stage crashed or its model endpoint failed); error_share = the worst stage's share
-- requires:
-- warn: error_share > 0.1
-- fail: error_share > 0.5

-- [setup]
CREATE OR REPLACE TEMP TABLE stage_error_shares AS
WITH given AS (SELECT stage, sum(clips) AS clips FROM stage_commits GROUP BY ALL),
errors AS (
    SELECT stage, count(DISTINCT coalesce(clip_id, item_id)) AS failed_clips, count(*) AS error_rows,
           string_agg(DISTINCT reason, ', ') AS reasons, min(detail) AS first_detail
    FROM rejections WHERE reason IN ('stage_error', 'api_error') GROUP BY ALL
), stages AS (SELECT stage FROM given UNION SELECT stage FROM errors UNION SELECT stage FROM run_stages)
SELECT s.stage, coalesce(g.clips, 0) AS clips, coalesce(e.failed_clips, 0) AS failed_clips,
       coalesce(e.error_rows, 0) AS error_rows, e.reasons, e.first_detail,
       CASE WHEN coalesce(e.failed_clips, 0) = 0 THEN 0.0
            ELSE least(1.0, e.failed_clips / greatest(1, coalesce(g.clips, 0))) END AS error_share
FROM stages s LEFT JOIN given g USING (stage) LEFT JOIN errors e USING (stage);

-- [summary]
SELECT stage, clips, failed_clips, error_rows, round(error_share, 3) AS error_share, reasons
FROM stage_error_shares ORDER BY error_share DESC, stage;

-- [metric]
SELECT CASE WHEN count(*) = 0 THEN NULL ELSE coalesce(max(error_share), 0) END AS error_share,
       string_agg(stage || ' ' || failed_clips || '/' || clips || ' clips (' || reasons || ')', ', ' ORDER BY error_share DESC, stage)
           FILTER (WHERE error_share > 0.1) AS note
FROM stage_error_shares;

-- [examples]
SELECT stage, failed_clips, clips, reasons, first_detail FROM stage_error_shares
WHERE failed_clips > 0 ORDER BY error_share DESC, stage;
