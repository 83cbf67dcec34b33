import pytest

from exposure_cli import fileio
from exposure_cli.errors import UserError


def test_read_text_errors_name_the_path_and_the_problem(tmp_path):
    with pytest.raises(UserError, match=r"nope.yaml: spec file not found$"):
        fileio.read_text(tmp_path / "nope.yaml", "spec file")
    bad = tmp_path / "bad.txt"
    bad.write_bytes("标题".encode() + b"\xff")
    with pytest.raises(UserError, match=r"bad.txt: file is not UTF-8 text \(invalid start byte at byte 6\)"):
        fileio.read_text(bad)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "summary.json"
    fileio.write_json(p, {"rows": [1]})

    def explode(path):
        path.write_text("half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        fileio._atomic(p, explode)
    assert fileio.read_text(p) == '{\n  "rows": [\n    1\n  ]\n}\n'
    assert [x.name for x in tmp_path.iterdir()] == ["summary.json"]


def test_files_get_the_permissions_open_would_give(tmp_path):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    p = fileio.write_text(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")
    assert p.stat().st_mode & 0o777 == (tmp_path / "b.txt").stat().st_mode & 0o777
