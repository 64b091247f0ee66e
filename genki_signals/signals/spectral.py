"""spectral operators."""
