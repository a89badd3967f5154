"""diffad.inference."""
