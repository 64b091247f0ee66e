"""orientation operators."""
