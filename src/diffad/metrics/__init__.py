"""diffad.metrics."""
