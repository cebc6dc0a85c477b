"""Export to the HuggingFace ecosystem."""
