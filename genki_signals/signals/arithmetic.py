"""arithmetic operators."""
