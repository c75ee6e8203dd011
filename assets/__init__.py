"""Data files shipped with CallPath (scenarios, targets, translations, schemas)."""
