"""Kafka through kafka-python: the source and sink, client options from config, the login check,
and the worker's topics. Imports: config, records, core types."""
