"""The live loop over small protocols (poll, parse, score, emit, flush, snapshot, commit),
the scoring engine, hot-swap, crash points and counts. Imports: detect, config, records."""
