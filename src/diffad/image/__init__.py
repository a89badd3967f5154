"""Image anomaly localisation."""
