-- check: mask_quality
-- measures: share of objects whose masks are empty in every frame, tiny (median area under 0.1% of the frame), huge (median area over half the frame: background, not an object) or flicker (area jumps more than 3x between consecutive non-empty frames)
-- requires: objects
-- needs: mask_area(STRUCT(size INTEGER[], counts VARCHAR)) -> BIGINT, a Python UDF over pycocotools registered by engine.audit (only for objects written before the `areas` column)
-- warn: bad_share > 0.05
-- fail: bad_share > 0.25
-- random weights: a random-weight segmenter with zero thresholds returns masks that cover most of the frame

-- [setup]
-- per object, on its lists (no unnest of every frame, no window sort): areas in frame order, then
-- the jump between consecutive frames where both are non-empty. Rows carry their masks' areas; rows
-- written before that column decode them (coalesce runs the UDF only on those rows).
CREATE OR REPLACE TEMP TABLE mask_stats AS
WITH areas AS (
    SELECT object_id, clip_id, label, source, masks[1].size[1] * masks[1].size[2] AS frame_area,
           list_select(coalesce(areas, list_transform(masks, lambda m: mask_area(m))),
                       list_grade_up(frame_indices)) AS a
    FROM objects
), per_object AS (
    SELECT object_id, clip_id, label, source, len(a) AS frames, list_max(a) AS max_area,
           list_median(list_filter(a, lambda x: x > 0)) AS median_area, frame_area,
           list_max(list_transform(range(1, len(a)), lambda i: CASE WHEN a[i] > 0 AND a[i + 1] > 0
               THEN greatest(a[i], a[i + 1]) / least(a[i], a[i + 1]) END)) AS max_jump
    FROM areas
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
