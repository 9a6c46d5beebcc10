-- The prepare job of `revgen prepare`: every helpful review of `reviews`, classified, keyed and formatted as one
-- training record. Rows the other filters drop keep their reason in `dropped` (and no text), so that the job can
-- count them. The helpful filter is the WHERE clause: the scan applies it itself, before it copies a row's text
-- (two thirds of the dump's rows fail it), and counts the rows it drops, which the job reports as `not_helpful`:
-- rows_read = malformed + not_helpful + dropped + kept. The shard writers take it from here.
--
-- Parameters (see sql/README.md):
--   $min_helpful         kept only when helpful_votes >= $min_helpful (--min-helpful, default 1; NULL counts as 0)
--   $min_chars           kept only when review_body has at least this many characters (--min-chars)
--   $max_chars           ... and at most this many (--max-chars)
--   $seed                seeds review_key, the stable hash of review_id behind the split and the shards
--   $val_cut             keys below it are the val split: --val-fraction of the key space
--   $val_width           key range of one val shard
--   $train_width         key range of one train shard
--   $last_shard          --shards - 1
--   {{category_filter}}  TRUE for rows outside --categories (FALSE without the flag)
--   {{too_short}}        character_length(review_body) < $min_chars with --min-chars, else FALSE
--   {{too_long}}         character_length(review_body) > $max_chars with --max-chars, else FALSE
--   {{text}}             the record, from --template: review_record(dropped IS NULL, literals and columns), or
--                        raw_record(…) with --raw-html; NULL for dropped rows, which are only counted
--   {{dedup}}            with --dedup, marks every copy of a record after the first (lowest key) as 'duplicate'
--
-- Output columns: dropped (NULL when kept), star_rating, split ('train'/'val'), shard, row_position and text. The
-- shard writers keep each shard's records in input order: by row_position (input object, then line).
WITH classified AS (
    SELECT
        *,
        review_key(review_id, $seed) AS key,
        CASE
            WHEN {{category_filter}} THEN 'category'
            WHEN {{too_short}} THEN 'too_short'
            WHEN {{too_long}} THEN 'too_long'
        END AS dropped
    FROM reviews
    -- An INT 0, as helpful_votes is: a BIGINT 0 would widen the column, and DataFusion would compute the widened
    -- column below the filter instead of letting the scan apply the filter.
    WHERE coalesce(helpful_votes, CAST(0 AS INT)) >= $min_helpful
),
formatted AS (
    SELECT dropped, star_rating, key, row_position, {{text}} AS text
    FROM classified
),
deduplicated AS (
    SELECT {{dedup}} AS dropped, star_rating, key, row_position, text
    FROM formatted
)
SELECT
    dropped,
    star_rating,
    CASE WHEN dropped IS NOT NULL THEN NULL WHEN key < $val_cut THEN 'val' ELSE 'train' END AS split,
    -- Each shard is a contiguous range of keys, so shards are balanced in expectation, whatever the input order.
    CAST(CASE
        WHEN dropped IS NOT NULL THEN NULL
        WHEN key < $val_cut THEN least(key / $val_width, $last_shard)
        ELSE least((key - $val_cut) / $train_width, $last_shard)
    END AS INT) AS shard,
    row_position,
    text
FROM deduplicated
