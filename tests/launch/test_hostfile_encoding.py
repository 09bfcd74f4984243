"""Issue 13, item 9: a hostfile that is not UTF-8 text is one `error:` line (exit 2), as a fleet
file or a device profile already is, not a UnicodeDecodeError traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from relief_mpi.errors import ReliefError
from tests.helpers import run_here

BAD = b"node1:2\nn\xe9ud2:1\n"  # a Latin-1 host name: byte 9 is not UTF-8


def test_parse_hostfile_names_the_file_when_it_is_not_utf8(tmp_path: Path) -> None:
    from relief_mpi.hostfile import parse_hostfile

    hf = tmp_path / "hosts"
    hf.write_bytes(BAD)
    with pytest.raises(ReliefError) as e:
        parse_hostfile(hf)
    assert str(e.value) == f"hostfile {hf}: not UTF-8 text (byte 9); save it as UTF-8"


def test_hosts_list_of_a_non_utf8_hostfile_is_one_line_and_exit_2(tmp_path: Path) -> None:
    hf = tmp_path / "hosts"
    hf.write_bytes(BAD)
    res = run_here(["hosts", "list", str(hf)])
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"error: hostfile {hf}: not UTF-8"), res.stderr
