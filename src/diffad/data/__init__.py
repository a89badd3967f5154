"""diffad.data: data loaders (ADBench ``.npz`` files and their evaluation protocols)."""
