"""Reports: every report and plot, on one document model and one formatting layer.

Needs pandas (and matplotlib and pyarrow for the run report); the commands import these modules
only when they write a report."""
