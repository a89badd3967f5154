"""diffad.bench: benchmark runners (tabular ADBench); import the submodules."""
