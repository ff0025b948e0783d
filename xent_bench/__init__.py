"""xent-bench: the harness, analysis, reports and command line of the cross-entropy benchmark
suite (the implementations are in ``xent_impls``). Layers and their import rule:
``docs/architecture.md``."""
