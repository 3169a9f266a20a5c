"""Offline replay through the live scoring path, detection metrics (event-wise, point-wise, NAB),
baselines, plots, benchmarks and the quality report. Imports: any core package; never adapters."""
