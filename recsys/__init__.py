"""TorchRec side: CTR models over the encoded Delta tables (sharded, unified and pruned embeddings).

Importing this package (or ``recsys.config``) does not import torch, so the Spark side can read
the training section of the config without it.
"""
