"""Synthetic labelled streams: normal vitals and sensor readings, injected anomalies, CSV/truth
writers. Imports: nothing of the project's but itself."""
