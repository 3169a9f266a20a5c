"""The edge: Kafka, Ray, Ray Train, Prometheus, storage and the local broker, one folder per system.
Imports: the core packages and other adapters; never commands or cli."""
