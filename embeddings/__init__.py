"""Spark side of the pipeline: vocabularies, encoding, FastRP and synthetic data over Delta tables.

Nothing in this package imports torch.
"""
