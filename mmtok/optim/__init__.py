"""Optimizer (AdamW, decay on matrices only) and learning-rate schedule (warm-up + cosine)."""
