"""diffad.report."""
