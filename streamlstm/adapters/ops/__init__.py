"""Operations: the Prometheus endpoint fed from the workers, and snapshot storage (local or
pyarrow.fs URIs). Imports: core, kafka."""
