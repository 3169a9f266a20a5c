"""The model and the per-stream maths: the LSTM autoencoder, the state table, the detector step,
normalisation, seasons, calibration and the alert state machine. Imports: config, records, torch."""
