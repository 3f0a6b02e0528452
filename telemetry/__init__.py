"""orchestrace telemetry: spans, metrics, export, live view and summary (no runtime imports)."""
