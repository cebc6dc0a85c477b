"""Evaluation: caption metrics, attribute accuracy, perplexity."""
