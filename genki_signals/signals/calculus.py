"""calculus operators."""
