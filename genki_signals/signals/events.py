"""events operators."""
