"""HTTP serving of a trained model or an export: `fashion.py serve` (see app.py)."""
