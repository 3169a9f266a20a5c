"""Ray actors: the PartitionWorker, the supervisor that assigns partitions and restarts them,
the run loop with draining, the retrain schedule. Imports: core, kafka, ops, retrain."""
