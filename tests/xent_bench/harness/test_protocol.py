"""The worker protocol: what workers write and how the harness reads it."""

from __future__ import annotations

import pytest

from xent_bench.harness import protocol


def test_every_message_written_is_read_back(capsys):
    protocol.send_start(3)
    protocol.send_finished()
    protocol.send_ceilings({"copy_GBps": 31.5})
    protocol.send_cell_error("oom", "MemoryError: no room")
    lines = capsys.readouterr().out.splitlines()
    assert [protocol.parse(line) for line in lines] == [
        protocol.Message(protocol.START, index=3),
        protocol.Message(protocol.FINISHED),
        protocol.Message(protocol.CEILINGS, payload={"copy_GBps": 31.5}),
        protocol.Message(protocol.CELL_ERROR, payload={"status": "oom",
                                                       "error": "MemoryError: no room"}),
    ]


@pytest.mark.parametrize("line", [
    "", "hello", "START", "START x", "START -1", "START 1 2", "FINISHED now", "CEILINGS",
    "CEILINGS {not json", "CEILINGS [1, 2]", "CELL_ERROR 3", "start 1",
])
def test_other_lines_are_not_messages(line):
    assert protocol.parse(line) is None
