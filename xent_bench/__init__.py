"""The xent-bench harness: agreement and timing runs, records, reports, and the CLI."""
