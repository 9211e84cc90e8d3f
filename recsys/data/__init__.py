"""Delta -> (dense tensor, KeyedJaggedTensor) batches; pure functions for hashing and splits."""
