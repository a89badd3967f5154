"""diffad.data: data loaders (ADBench ``.npz`` files and their evaluation protocols)."""

#: What a 3-D .npy file holds (see :mod:`diffad.data.raw_images`): never guessed.
NPY_3D: tuple[str, ...] = ("stack", "volume", "rgb")
