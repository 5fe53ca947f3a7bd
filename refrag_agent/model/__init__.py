"""The REFRAG model: tokenizer, chunker, encoder, projector, decoder, assembly, generation."""
