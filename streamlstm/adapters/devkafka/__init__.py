"""A real Apache Kafka broker (KRaft) run locally from Maven jars: one per test or demo, a shared
detached one for the CLI, and a secured (SASL/TLS) one for tests. Imports: config only."""
