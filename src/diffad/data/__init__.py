"""diffad.data."""
