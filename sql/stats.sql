-- The stats report of `revgen stats`, as in the original project's two tables: per star rating, how many reviews
-- there are and how long their bodies are in characters (mean, median, 90th percentile), for all reviews and for
-- helpful ones. One pass over `reviews`, in memory bounded by the number of distinct lengths, whatever the dump's
-- size: the scan builds a histogram of lengths per subset and rating (grouping sets give both subsets at once),
-- and every figure comes from that histogram. Quantiles interpolate between the two closest ranks, as
-- percentile_cont does: value(k) is the length of the k-th review (0-based) in length order.
--
-- Parameters (see sql/README.md):
--   $min_helpful  a review is helpful when helpful_votes >= $min_helpful (--min-helpful, default 1)
--   {{by}}        extra grouping columns from --by, such as `product_category, `; empty by default
--
-- Output columns: subset ('all' or 'helpful'), the --by columns, star_rating, reviews, avg_review_length,
-- median_review_length, p90_review_length.
WITH histogram AS (
    SELECT
        CASE WHEN grouping(helpful) = 1 THEN 'all' WHEN helpful THEN 'helpful' END AS subset,
        {{by}} star_rating,
        chars,
        count(*) AS n
    FROM (
        SELECT
            {{by}} star_rating,
            helpful_votes >= $min_helpful AS helpful,
            -- Characters, not bytes: character_length counts Unicode scalar values.
            character_length(review_body) AS chars
        FROM reviews
    )
    GROUP BY GROUPING SETS (({{by}} star_rating, chars), ({{by}} star_rating, helpful, chars))
),
ranked AS (
    SELECT
        subset, {{by}} star_rating, chars, n,
        -- Reviews up to and including this length, and in the whole group.
        sum(n) OVER (PARTITION BY subset, {{by}} star_rating ORDER BY chars ROWS UNBOUNDED PRECEDING) AS upto,
        sum(n) OVER (PARTITION BY subset, {{by}} star_rating) AS total
    FROM histogram
    -- The grouping set split by `helpful` also yields the unhelpful reviews; they are not a subset of the report.
    WHERE subset IS NOT NULL
),
quantiles AS (
    SELECT
        subset, {{by}} star_rating,
        max(total) AS reviews,
        sum(CAST(chars AS DOUBLE) * n) / max(total) AS avg_review_length,
        -- value(k) = min(chars) FILTER (WHERE upto > k), at k = floor and ceil of p * (reviews - 1)
        min(chars) FILTER (WHERE upto > floor(0.5 * (total - 1))) AS median_lo,
        min(chars) FILTER (WHERE upto > ceil(0.5 * (total - 1))) AS median_hi,
        max(0.5 * (total - 1) - floor(0.5 * (total - 1))) AS median_frac,
        min(chars) FILTER (WHERE upto > floor(0.9 * (total - 1))) AS p90_lo,
        min(chars) FILTER (WHERE upto > ceil(0.9 * (total - 1))) AS p90_hi,
        max(0.9 * (total - 1) - floor(0.9 * (total - 1))) AS p90_frac
    FROM ranked
    GROUP BY subset, {{by}} star_rating
)
SELECT
    subset, {{by}} star_rating, reviews, avg_review_length,
    median_lo + median_frac * (median_hi - median_lo) AS median_review_length,
    p90_lo + p90_frac * (p90_hi - p90_lo) AS p90_review_length
FROM quantiles
ORDER BY subset, {{by}} star_rating
