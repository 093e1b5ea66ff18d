-- check: review_rejection_rate
-- measures: share of reviewer verdicts that reject, overall; the summary splits it per reviewer model and per object label
-- requires: reviews
-- warn: reject_rate > 0.3
-- fail: reject_rate > 0.6
-- random weights: a random-weight reviewer's verdicts are noise

-- [summary]
SELECT r.model, coalesce(o.label, '?') AS label, count(*) AS reviews,
       count(*) FILTER (WHERE r.verdict = 'reject') AS rejected,
       round(avg(CASE WHEN r.verdict = 'reject' THEN 1.0 ELSE 0.0 END), 3) AS reject_rate
FROM reviews r LEFT JOIN objects o USING (object_id)
GROUP BY ALL ORDER BY reject_rate DESC, reviews DESC, r.model, label;

-- [metric]
SELECT avg(CASE WHEN verdict = 'reject' THEN 1.0 ELSE 0.0 END) AS reject_rate FROM reviews;

-- [examples]
SELECT r.review_id, r.clip_id, r.object_id, o.label, r.model, r.score, r.reason
FROM reviews r LEFT JOIN objects o USING (object_id)
WHERE r.verdict = 'reject' ORDER BY r.model, o.label, r.review_id LIMIT 50;
