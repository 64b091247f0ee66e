"""Nodes: each one OS process of a topology. Logic classes are plain; ``runner`` owns processes."""
