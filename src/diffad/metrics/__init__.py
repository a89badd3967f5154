"""diffad.metrics: detection and localisation metrics (import the submodules)."""
