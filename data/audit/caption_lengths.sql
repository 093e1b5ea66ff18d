-- check: caption_lengths
-- measures: caption length in words per kind; short_share = captions of a detailed kind (every kind but the *_short ones) under 3 words
-- requires: captions
-- warn: short_share > 0.05
-- fail: short_share > 0.25
-- random weights: a random-weight captioner writes a few noise tokens, not sentences

-- [setup]
-- Words counted once for both statements; the regex only runs on texts with runs of whitespace, tabs
-- or line breaks (it is the costly part on a million rows); a single-spaced text splits on ' '.
CREATE OR REPLACE TEMP TABLE caption_words AS
SELECT kind, CASE WHEN contains(text, '  ') OR contains(text, chr(9)) OR contains(text, chr(10))
                       OR contains(text, chr(12)) OR contains(text, chr(13))
                  THEN len(regexp_split_to_array(trim(text), '\s+')) ELSE len(string_split(trim(text), ' ')) END AS words
FROM captions;

-- [summary]
SELECT kind, count(*) AS captions, min(words) AS min_words, quantile_disc(words, 0.1) AS p10,
       median(words) AS median, quantile_disc(words, 0.9) AS p90, max(words) AS max_words
FROM caption_words GROUP BY ALL ORDER BY kind;

-- [metric]
SELECT coalesce(avg(CASE WHEN words < 3 THEN 1.0 ELSE 0.0 END), 0) AS short_share
FROM caption_words WHERE kind NOT LIKE '%short';

-- [examples]
SELECT caption_id, clip_id, object_id, kind, text FROM captions WHERE kind NOT LIKE '%short'
ORDER BY len(regexp_split_to_array(trim(text), '\s+')), caption_id LIMIT 50;
