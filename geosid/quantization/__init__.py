"""Tokenizers (one contract: `geosid.quantization.base`), their level quantizers, SIDs and
their metrics. numpy / faiss / torch only: no engine, no lake."""

from geosid.quantization.base import TOKENIZERS, Tokenizer, load, restore, save, state, tokenizer_class

__all__ = ["TOKENIZERS", "Tokenizer", "load", "restore", "save", "state", "tokenizer_class"]
