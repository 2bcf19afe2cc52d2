"""Spark jobs of the pipeline: each takes an injected SparkSession."""
