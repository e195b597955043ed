"""Training the bidirectional language model: corpus batches, softmax, objective, config, loop, checkpoints,
metrics, evaluation, export, initialisation from a model, and data parallelism."""
