"""combine operators."""
