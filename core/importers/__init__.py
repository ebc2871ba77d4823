"""Importers: other tools' stores read into ours (read only; the source never changes)."""
