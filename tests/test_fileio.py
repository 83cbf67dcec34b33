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


def test_checkpoints_carry_a_checksum_that_torch_load_ignores_and_torch_load_here_checks(tmp_path):
    import hashlib
    import zipfile

    import torch

    from exposure_cli.errors import Damaged

    p = fileio.torch_save(tmp_path / "last.pt", {"w": torch.arange(1000.0)})
    data = p.read_bytes()
    comment = zipfile.ZipFile(p).comment  # the archive's own comment, as any zip reader sees it
    assert comment == b"exposure-sha256:" + hashlib.sha256(data[:-len(comment) - 2]).hexdigest().encode()
    assert torch.equal(torch.load(p, weights_only=True)["w"], torch.arange(1000.0))
    assert torch.equal(fileio.torch_load(p)["w"], torch.arange(1000.0))
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 1  # one bit, inside the tensor's bytes: torch.load alone reads it happily
    p.write_bytes(bytes(damaged))
    assert not torch.equal(torch.load(p, weights_only=True)["w"], torch.arange(1000.0))
    with pytest.raises(Damaged, match="last.pt: damaged: its content does not match the checksum"):
        fileio.torch_load(p)
    torch.save({"w": 1}, tmp_path / "old.pt")  # written without one (an older version): read as before
    assert fileio.torch_load(tmp_path / "old.pt") == {"w": 1}


def test_previous_keeps_the_replaced_file(tmp_path):
    p, prev = tmp_path / "last.pt", tmp_path / "last.prev.pt"
    fileio.write_bytes(p, b"one", previous=prev)
    assert not prev.exists()
    fileio.write_bytes(p, b"two", previous=prev)
    assert (p.read_bytes(), prev.read_bytes()) == (b"two", b"one")


def test_a_full_disk_is_one_line_naming_the_file_and_the_size(tmp_path, monkeypatch):
    """ENOSPC as a write meets it (tests/test_torture.py meets a real one on a tmpfs)."""
    import errno

    fileio.write_bytes(tmp_path / "last.pt", b"old")

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.Path, "write_bytes", full)
    with pytest.raises(UserError, match=r"last.pt: no space left on the filesystem at /\S* \(2\.0 MB needed, .* (kB|MB) free\)"):
        fileio.write_bytes(tmp_path / "last.pt", b"x" * 2_000_000)
    monkeypatch.undo()
    assert [x.name for x in tmp_path.iterdir()] == ["last.pt"] and (tmp_path / "last.pt").read_bytes() == b"old"


def test_compressed_text_round_trips_with_the_same_bytes_and_a_cut_one_is_one_line(tmp_path):
    import gzip
    import lzma

    text = "source\treference\tprediction\n\t深度卷积\t基于遮挡\n" * 50
    a = fileio.write_xz_text(tmp_path / "a.tsv.xz", text)
    assert lzma.decompress(a.read_bytes()).decode("utf-8") == text == fileio.read_text(a)  # lzma's own reading
    assert fileio.write_xz_text(tmp_path / "b.tsv.xz", text).read_bytes() == a.read_bytes()  # kept twice: git sees no change
    (tmp_path / "old.tsv.gz").write_bytes(gzip.compress(text.encode("utf-8")))  # as an older version kept it
    assert fileio.read_text(tmp_path / "old.tsv.gz") == text
    for suffix, codec, data in ((".xz", "xz", a.read_bytes()), (".gz", "gzip", (tmp_path / "old.tsv.gz").read_bytes())):
        (tmp_path / f"cut.tsv{suffix}").write_bytes(data[:-9])
        with pytest.raises(UserError, match=rf"cut\.tsv\{suffix}: file is not {codec}-compressed whole"):
            fileio.read_text(tmp_path / f"cut.tsv{suffix}")
        (tmp_path / f"plain.tsv{suffix}").write_text(text, encoding="utf-8")
        with pytest.raises(UserError, match=rf"plain\.tsv\{suffix}: file is not {codec}-compressed whole"):
            fileio.read_text(tmp_path / f"plain.tsv{suffix}")


