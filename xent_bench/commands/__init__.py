"""The subcommands of ``xent-bench``, one module each; each has ``add_parsers(sub)``, which adds
its parser(s) and sets ``func`` to the function that runs it."""
