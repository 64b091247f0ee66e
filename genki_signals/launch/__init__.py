"""Topology specs and the launcher that runs them as processes."""
