"""Retraining through Ray Train: the TorchTrainer run, one gated round, its data from the topics,
and the model registry on shared storage. Imports: core, kafka, devkafka."""
