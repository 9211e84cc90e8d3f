"""The only package that knows the planner, sharders, DistributedModelParallel and gloo/nccl."""
