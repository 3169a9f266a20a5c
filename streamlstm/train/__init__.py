"""Stateful training (truncated BPTT), model files, the validation gate and retrain data selection.
Imports: detect, stream, config, records, datafiles."""
