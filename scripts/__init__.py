"""Maintenance scripts (demo weights, report screenshots): `python -m scripts.<name>` from the repository root."""
