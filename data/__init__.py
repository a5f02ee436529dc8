"""Tokenizers, corpus preparation, batch loading and corpus recipes."""
