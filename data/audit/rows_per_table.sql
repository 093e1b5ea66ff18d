-- check: rows_per_table
-- measures: rows in every table, split by source where the table has a source column; a dataset without clips fails
-- requires:
-- fail: clips < 1

-- [summary]
SELECT "table", source, rows FROM table_rows ORDER BY "table", source NULLS FIRST;

-- [metric]
SELECT count(*) AS clips FROM clips;
