"""Exception messages as one readable line (behaviour cells, semantics entries, reports)."""

from __future__ import annotations

import re

_TF_NODE = re.compile(r"\{\{function_node [^}]*\}\}\s*")
_INDUCTOR_PATH = re.compile(r"[^\s,]+\.cpp:\d+")
_DYNAMO_FAKE = re.compile(
    r"Dynamo failed to run FX node with fake tensors: .*?: got (\w+)\(['\"](.*)")


def clean_message(text: str) -> str:
    """An exception message on one line without the noise that hides its point: TensorFlow's
    ``{{function_node ...}}`` prefix, inductor's generated file paths, and Dynamo's wrapping of
    the error it met while tracing."""
    text = " ".join(str(text).split())
    text = _TF_NODE.sub("", text)
    text = _INDUCTOR_PATH.sub("(generated kernel)", text)
    match = _DYNAMO_FAKE.search(text)
    if match:
        inner = re.sub(r"['\"]\)(\s.*)?$", "", match.group(2))
        text = f"while tracing: {match.group(1)}: {inner}"
    return text
