"""Analysis: run folders as tables, agreement verdicts over a run, and the statistics of
comparing runs (pandas)."""
