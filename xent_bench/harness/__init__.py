"""The harness: cells, presets, workers, the runner, timing, floors, memory, records and
provenance. Needs NumPy and the frameworks it measures; no pandas."""
