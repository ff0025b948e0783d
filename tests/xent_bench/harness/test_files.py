"""Writing into and reading from folders that may come from someone else."""

from __future__ import annotations

import os

import pytest

from xent_bench.harness import files


def test_writing_replaces_a_link_instead_of_writing_through_it(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "report.md").symlink_to(outside)
    files.write_text(folder / "report.md", "new report")
    assert outside.read_text() == "keep me"
    assert not (folder / "report.md").is_symlink()
    assert (folder / "report.md").read_text() == "new report"
    assert sorted(p.name for p in folder.iterdir()) == ["report.md"]  # no temporary left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "records.csv"
    target.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.write_with(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.csv"]


def test_folders_that_are_links_and_special_targets_are_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "plots").symlink_to(elsewhere)
    with pytest.raises(files.UnsafePathError, match="symbolic link"):
        files.write_text(tmp_path / "plots" / "x.png", "png")
    assert list(elsewhere.iterdir()) == []
    os.mkfifo(tmp_path / "report.html")
    with pytest.raises(files.UnsafePathError, match="not a regular file"):
        files.write_text(tmp_path / "report.html", "<html>")


def test_reading_refuses_special_files_and_oversized_ones(tmp_path):
    fifo = tmp_path / "records.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        files.check_readable(fifo, 100)
    big = tmp_path / "meta.json"
    big.write_text("x" * 101)
    with pytest.raises(ValueError, match="over the 100-byte limit"):
        files.check_readable(big, 100)
    (tmp_path / "zero").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="not a regular file"):
        files.check_readable(tmp_path / "zero", 100)
    assert files.check_readable(big, 101) == big


@pytest.mark.parametrize("name, safe", [
    ("20261201-181446-timing-52d45c", True),
    ("pytest-import.1", True),
    ("../../etc", False),
    ("a/b", False),
    ("run\n$(touch pwned)", False),
    ("<b>run</b>", False),
    ("", False),
    (".hidden", False),
    ("x" * 129, False),
    (None, False),
])
def test_safe_names(name, safe):
    assert files.is_safe_name(name) is safe


def test_a_file_that_cannot_be_written_keeps_the_old_one_and_names_the_cause(tmp_path):
    """A report rewritten on a full disk: WriteError naming the path and cause, the old file
    whole, no temporary file left behind."""
    import errno

    path = tmp_path / "report.md"
    path.write_text("the old report\n")

    def full_disk(tmp):
        tmp.write_text("half a rep")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(files.WriteError, match=r"cannot write .*report\.md: No space left"):
        files.write_with(path, full_disk)
    assert path.read_text() == "the old report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]
