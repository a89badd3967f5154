"""diffad.image."""
