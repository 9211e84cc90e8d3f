"""TorchRec side: CTR models over the encoded Delta tables (sharded, unified and pruned embeddings).

Its configuration lives in ``core.train_config`` (pure pydantic), so the Spark side and the jobs can
read the training section without torch. Nothing here imports ``embeddings``, and only
``recsys.launch_spark`` imports pyspark.
"""
