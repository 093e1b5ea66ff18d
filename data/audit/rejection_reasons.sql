-- check: rejection_reasons
-- measures: rejections per stage and reason code; invalid_row_share = rows refused by the contract (reason invalid_row) over all rows written
-- requires:
-- warn: invalid_row_share > 0
-- fail: invalid_row_share > 0.01

-- [summary]
SELECT stage, reason, count(*) AS rejections, count(DISTINCT clip_id) AS clips, bool_or(retryable) AS retryable
FROM rejections GROUP BY ALL ORDER BY rejections DESC, stage, reason;

-- [metric]
SELECT (SELECT count(*) FROM rejections WHERE reason = 'invalid_row')
       / greatest(1, (SELECT sum(rows) FROM table_rows)) AS invalid_row_share;

-- [examples]
SELECT item_id, clip_id, stage, reason, detail FROM rejections
ORDER BY reason = 'invalid_row' DESC, stage, reason, item_id LIMIT 50;
