-- The stats report of `revgen stats`, as in the original project's two tables: per star rating, how many reviews
-- there are and how long their bodies are in characters (mean, median, 90th percentile), for all reviews and for
-- helpful ones. One pass over `reviews`: the grouping sets compute both subsets from the same scan.
--
-- Parameters (see sql/README.md):
--   $min_helpful  a review is helpful when helpful_votes >= $min_helpful (--min-helpful, default 1)
--   {{by}}        extra grouping columns from --by, such as `product_category, `; empty by default
--
-- Output columns: subset ('all' or 'helpful'), the --by columns, star_rating, reviews, avg_review_length,
-- median_review_length, p90_review_length.
SELECT subset, {{by}} star_rating, reviews, avg_review_length, median_review_length, p90_review_length
FROM (
    SELECT
        CASE WHEN grouping(helpful) = 1 THEN 'all' WHEN helpful THEN 'helpful' END AS subset,
        {{by}} star_rating,
        count(*) AS reviews,
        avg(chars) AS avg_review_length,
        median(chars) AS median_review_length,
        percentile_cont(0.9) WITHIN GROUP (ORDER BY chars) AS p90_review_length
    FROM (
        SELECT
            {{by}} star_rating,
            helpful_votes >= $min_helpful AS helpful,
            -- Characters, not bytes: character_length counts Unicode scalar values.
            CAST(character_length(review_body) AS DOUBLE) AS chars
        FROM reviews
    )
    GROUP BY GROUPING SETS (({{by}} star_rating), ({{by}} star_rating, helpful))
)
-- The grouping set split by `helpful` also yields the unhelpful reviews; they are not a subset of the report.
WHERE subset IS NOT NULL
ORDER BY subset, {{by}} star_rating
