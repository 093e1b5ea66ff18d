-- check: expected_tables
-- measures: tables that a stage of the last run (run.json) writes but that hold no rows; the summary lists each table with the stages that write it (data/audit/random_weights.yaml says which ones random-weight models may leave empty, and why)
-- requires:
-- fail: empty_tables > 0

-- [summary]
SELECT r."table", string_agg(r.stage, ', ' ORDER BY r.stage) AS written_by, any_value(coalesce(t.rows, 0)) AS rows
FROM run_stages r LEFT JOIN (SELECT "table", sum(rows) AS rows FROM table_rows GROUP BY ALL) t USING ("table")
GROUP BY ALL ORDER BY rows, r."table";

-- [metric]
-- NULL (n/a) when the dataset has no run.json to say what was expected.
SELECT CASE WHEN count(*) = 0 THEN NULL ELSE count(*) FILTER (WHERE coalesce(t.rows, 0) = 0) END AS empty_tables,
       -- one line: the empty tables, or why random-weight models leave them empty when that explains all
       CASE WHEN bool_and(w.reason IS NOT NULL) FILTER (WHERE coalesce(t.rows, 0) = 0)
            THEN 'expected with random-weight models: '
                 || string_agg(w.reason, '; ' ORDER BY r."table") FILTER (WHERE coalesce(t.rows, 0) = 0)
            ELSE 'empty: ' || string_agg(r."table", ', ' ORDER BY r."table") FILTER (WHERE coalesce(t.rows, 0) = 0)
       END AS note
FROM (SELECT DISTINCT "table" FROM run_stages) r
LEFT JOIN (SELECT "table", sum(rows) AS rows FROM table_rows GROUP BY ALL) t USING ("table")
LEFT JOIN random_weight_tables w USING ("table");

-- [examples]
SELECT r."table", string_agg(r.stage, ', ' ORDER BY r.stage) AS written_by
FROM run_stages r LEFT JOIN (SELECT "table", sum(rows) AS rows FROM table_rows GROUP BY ALL) t USING ("table")
WHERE coalesce(t.rows, 0) = 0 GROUP BY ALL ORDER BY r."table";
