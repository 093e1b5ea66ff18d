-- check: blind_filter
-- measures: blind-filter hit rate: share of blind (text-only) checks that flagged or dropped a question, i.e. questions answerable without the video
-- requires: mcq_checks
-- warn: hit_rate > 0.2
-- fail: hit_rate > 0.5
-- random weights: a random-weight blind answerer and question writer make hits a matter of chance

-- [summary]
SELECT "check", outcome, count(*) AS questions FROM mcq_checks GROUP BY ALL ORDER BY "check", outcome;

-- [metric]
SELECT avg(CASE WHEN outcome IN ('flag', 'drop') THEN 1.0 ELSE 0.0 END) AS hit_rate
FROM mcq_checks WHERE "check" ILIKE '%blind%';

-- [examples]
SELECT k.question_id, k.clip_id, k."check", k.outcome, k.detail, m.question
FROM mcq_checks k LEFT JOIN mcqs m USING (question_id)
WHERE k."check" ILIKE '%blind%' AND k.outcome IN ('flag', 'drop') ORDER BY k.question_id LIMIT 50;
