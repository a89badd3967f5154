"""diffad.tabular."""
