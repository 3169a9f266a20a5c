"""Operations: the Prometheus endpoint, snapshot storage (local or pyarrow.fs URIs) with its
fencing generations, third-party log levels. Imports: core, kafka."""
