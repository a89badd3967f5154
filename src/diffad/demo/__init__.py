"""``diffad demo``: the image demo (``brain.py``) and the tabular one (``tabular.py``)."""
