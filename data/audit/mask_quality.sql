-- check: mask_quality
-- measures: share of objects whose masks are empty in every frame, tiny (median area under 0.1% of the frame), huge (median area over half the frame: background, not an object) or flicker (area jumps more than 3x between consecutive non-empty frames)
-- requires: objects
-- needs: mask_area(STRUCT(size INTEGER[], counts VARCHAR)) -> BIGINT, a Python UDF over pycocotools registered by engine.audit
-- warn: bad_share > 0.05
-- fail: bad_share > 0.25
-- random weights: a random-weight segmenter with zero thresholds returns masks that cover most of the frame

-- [setup]
CREATE OR REPLACE TEMP TABLE mask_stats AS
WITH frames AS (
    SELECT object_id, clip_id, label, source, unnest(frame_indices) AS frame_index, unnest(masks) AS mask
    FROM objects
), areas AS (
    SELECT object_id, clip_id, label, source, frame_index,
           mask_area(mask) AS area, mask.size[1] * mask.size[2] AS frame_area
    FROM frames
), steps AS (
    SELECT *, lag(area) OVER (PARTITION BY object_id ORDER BY frame_index) AS prev_area FROM areas
), per_object AS (
    SELECT object_id, any_value(clip_id) AS clip_id, any_value(label) AS label, any_value(source) AS source,
           count(*) AS frames, max(area) AS max_area, median(area) FILTER (WHERE area > 0) AS median_area,
           any_value(frame_area) AS frame_area,
           max(greatest(area, prev_area) / least(area, prev_area)) FILTER (WHERE area > 0 AND prev_area > 0) AS max_jump
    FROM steps GROUP BY object_id
)
SELECT *, max_area = 0 AS empty,
       max_area > 0 AND median_area < 0.001 * frame_area AS tiny,
       max_area > 0 AND median_area > 0.5 * frame_area AS huge,
       coalesce(max_jump > 3, false) AS flicker
FROM per_object;

-- [summary]
SELECT source, count(*) AS objects, count(*) FILTER (WHERE empty) AS empty, count(*) FILTER (WHERE tiny) AS tiny,
       count(*) FILTER (WHERE huge) AS huge,
       count(*) FILTER (WHERE flicker) AS flicker, round(avg(median_area / frame_area), 4) AS mean_area_share
FROM mask_stats GROUP BY ALL ORDER BY source;

-- [metric]
SELECT avg(CASE WHEN empty OR tiny OR huge OR flicker THEN 1.0 ELSE 0.0 END) AS bad_share FROM mask_stats;

-- [examples]
SELECT object_id, clip_id, label, source, frames, empty, tiny, huge, flicker, max_area, median_area, round(max_jump, 2) AS max_jump
FROM mask_stats WHERE empty OR tiny OR huge OR flicker ORDER BY empty DESC, tiny DESC, huge DESC, max_jump DESC, object_id LIMIT 50;
