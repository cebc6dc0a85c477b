"""Generation: sampling, KV-cache decoding, captioning and music generation."""
