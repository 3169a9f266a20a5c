"""streamlstm: streaming anomaly detection with carried LSTM-autoencoder state."""

__version__ = "0.1.0"
