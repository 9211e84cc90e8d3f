"""The dependency-free core both halves import: config, errors, encoding contract, tracking, Delta reads, CLI.

``core`` imports neither ``embeddings`` (Spark side) nor ``recsys`` (TorchRec side), and nothing in it
imports pyspark or torch, so either side (and the MLflow pyfunc) can use it alone.
"""
