"""Tokenizer: text (SentencePiece), audio (EnCodec codes) and the one vocabulary that joins them."""
