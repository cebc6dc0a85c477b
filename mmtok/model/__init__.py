"""Model: config, decoder-only Transformer, attention backends."""
