"""Tasks of this level (to be written)."""
