"""The stats query of sql/stats.sql in DuckDB, over an AWS-format .tsv.gz, with quoting off (quote='')."""
import sys
import duckdb

path = sys.argv[1]
con = duckdb.connect()
con.execute("SET threads TO 2")
columns = {c: "VARCHAR" for c in (
    "marketplace customer_id review_id product_id product_parent product_title product_category star_rating "
    "helpful_votes total_votes vine verified_purchase review_headline review_body review_date").split()}
for c in ("star_rating", "helpful_votes", "total_votes"):
    columns[c] = "INTEGER"
rows = con.execute(f"""
    SELECT subset, star_rating, reviews, avg_review_length, median_review_length, p90_review_length FROM (
        SELECT CASE WHEN grouping(helpful) = 1 THEN 'all' WHEN helpful THEN 'helpful' END AS subset,
               star_rating, count(*) AS reviews, avg(chars) AS avg_review_length,
               median(chars) AS median_review_length, quantile_cont(chars, 0.9) AS p90_review_length
        FROM (SELECT star_rating, helpful_votes >= 1 AS helpful, CAST(length(review_body) AS DOUBLE) AS chars
              FROM read_csv(?, delim='\t', quote='', escape='', header=true, columns={columns!r},
                            ignore_errors=true))
        GROUP BY GROUPING SETS ((star_rating), (star_rating, helpful)))
    WHERE subset IS NOT NULL ORDER BY subset, star_rating
""", [path]).fetchall()
for row in rows:
    print(",".join(str(v) for v in row))
