"""The stats query of sql/stats.sql in PySpark local mode (the original project's tool), over an AWS .tsv.gz."""
import sys
from pyspark.sql import SparkSession

path, master = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "local[2]"
spark = (SparkSession.builder.master(master).appName("revgen-bench-stats")
         .config("spark.driver.memory", "4g").config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
schema = ", ".join(f"{c} {'INT' if c in ('star_rating', 'helpful_votes', 'total_votes') else 'STRING'}" for c in (
    "marketplace customer_id review_id product_id product_parent product_title product_category star_rating "
    "helpful_votes total_votes vine verified_purchase review_headline review_body review_date").split())
# quote="" turns quoting off in Spark's CSV reader: the AWS files have none.
spark.read.csv(path, sep="\t", header=True, quote="", schema=schema, mode="DROPMALFORMED") \
    .createOrReplaceTempView("reviews")
rows = spark.sql("""
    SELECT subset, star_rating, reviews, avg_review_length, median_review_length, p90_review_length FROM (
        SELECT CASE WHEN grouping(helpful) = 1 THEN 'all' WHEN helpful THEN 'helpful' END AS subset,
               star_rating, count(*) AS reviews, avg(chars) AS avg_review_length,
               percentile(chars, 0.5) AS median_review_length, percentile(chars, 0.9) AS p90_review_length
        FROM (SELECT star_rating, helpful_votes >= 1 AS helpful, CAST(char_length(review_body) AS DOUBLE) AS chars
              FROM reviews)
        GROUP BY GROUPING SETS ((star_rating), (star_rating, helpful)))
    WHERE subset IS NOT NULL ORDER BY subset, star_rating
""").collect()
for row in rows:
    print(",".join(str(v) for v in row))
spark.stop()
