-- check: clips_without_objects
-- measures: share of clips with no tracked object (no masklet in objects)
-- requires: clips, objects
-- warn: share > 0.1
-- fail: share > 0.5
-- random weights: a random-weight detector finds nothing meaningful to track

-- [summary]
SELECT c.source, count(*) AS clips, count(*) FILTER (WHERE o.clip_id IS NULL) AS without_objects
FROM clips c LEFT JOIN (SELECT DISTINCT clip_id FROM objects) o USING (clip_id)
GROUP BY ALL ORDER BY c.source;

-- [metric]
SELECT avg(CASE WHEN o.clip_id IS NULL THEN 1.0 ELSE 0.0 END) AS share
FROM clips c LEFT JOIN (SELECT DISTINCT clip_id FROM objects) o USING (clip_id);

-- [examples]
SELECT c.clip_id, c.source, c.source_key, c.video_path, c.caption
FROM clips c ANTI JOIN objects o USING (clip_id) ORDER BY c.clip_id LIMIT 50;
