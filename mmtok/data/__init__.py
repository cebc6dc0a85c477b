"""Data: demo corpus, manifests, WebDataset shards, streaming, interleaving and packing."""
