"""Errors for names a user typed: an unknown name with its close matches ("did you mean")."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Beyond this many known names an error gives their count and the command that lists them,
# instead of one line with every name.
MAX_KNOWN_LISTED = 12


def unknown_name(kind: str, name: str, known: Iterable[str], listing: str = "xent-bench list"
                 ) -> ValueError:
    """The ``ValueError`` for a name that is not one of ``known``: the close matches ("did you
    mean"), then the known names, or where there are more than ``MAX_KNOWN_LISTED`` of them
    their count and the command that lists them."""
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    if len(known) > MAX_KNOWN_LISTED:
        listed = f"{len(known)} known ({listing} shows them)"
    else:
        listed = f"known: {', '.join(known)}"
    return ValueError(f"unknown {kind} {name!r}.{hint} {listed[0].upper()}{listed[1:]}")
