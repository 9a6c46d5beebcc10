"""The original project's PySpark step: keep reviews with helpful_votes >= 1 and write them as tagged text
(`<|startoftext|> rating|||headline|||body<|endoftext|>`, one per line), over an AWS .tsv.gz, into N text files."""
import sys
from pyspark.sql import SparkSession
from pyspark.sql.functions import coalesce, col, concat, lit

path, out, master, shards = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
spark = (SparkSession.builder.master(master).appName("revgen-bench-prepare")
         .config("spark.driver.memory", "4g").config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
schema = ", ".join(f"{c} {'INT' if c in ('star_rating', 'helpful_votes', 'total_votes') else 'STRING'}" for c in (
    "marketplace customer_id review_id product_id product_parent product_title product_category star_rating "
    "helpful_votes total_votes vine verified_purchase review_headline review_body review_date").split())
# quote="" turns quoting off in Spark's CSV reader: the AWS files have none.
reviews = spark.read.csv(path, sep="\t", header=True, quote="", schema=schema, mode="DROPMALFORMED")
# Spark reads an empty field as NULL, and concat() of a NULL is NULL (an empty line): keep empty fields empty.
text = lambda name: coalesce(col(name), lit(""))
records = reviews.where(col("helpful_votes") >= 1).select(concat(
    lit("<|startoftext|> "), col("star_rating").cast("string"), lit("|||"), text("review_headline"), lit("|||"),
    text("review_body"), lit("<|endoftext|>")).alias("value"))
records.repartition(shards).write.mode("overwrite").text(out)
spark.stop()
