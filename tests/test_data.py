"""Data module: the split recipe is checked against the published SPLITS.sha256, fetch against the
manifest hashes, and the reading rules against small hand-written files."""

import hashlib
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exposure_cli import data
from exposure_cli.cli import app
from exposure_cli.data import Pair
from exposure_cli.errors import UserError

runner = CliRunner()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def published_hashes(shared_data: Path) -> dict[str, str]:
    out = {}
    for line in (shared_data / "SPLITS.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        out[name] = digest
    return out


def write_manifest(path: Path, rows: list[tuple[str, str, int, str]]) -> Path:
    lines = ["path\tsha256\tbytes\tupstream"] + [f"{p}\t{h}\t{n}\t{u}" for p, h, n, u in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# ---------------------------------------------------------------------------------- prepare


def test_prepare_reproduces_published_splits(shared_data, tmp_path):
    result = data.prepare(shared_data / "raw", tmp_path)
    assert result["counts"] == {
        "csl": {"train": 3000, "dev": 500, "test": 498},
        "lcsts": {"train": 8382, "dev": 993, "test": 1000},
    }
    want = published_hashes(shared_data)
    assert len(want) == 6
    for name, digest in want.items():
        assert sha(tmp_path / name) == digest, name
    # Only the six splits, no temp files left behind by the atomic writes.
    assert sorted(p.relative_to(tmp_path).as_posix() for p in leftovers(tmp_path)) == sorted(want)


def test_read_pairs_reads_prepared_split(shared_data, tmp_path):
    data.prepare(shared_data / "raw", tmp_path)
    pairs = data.read_pairs(tmp_path / "csl" / "dev.tsv")
    assert len(pairs) == 500
    first = (tmp_path / "csl" / "dev.tsv").read_text(encoding="utf-8").split("\n")[0]
    assert first == f"{pairs[0].target}\t{pairs[0].source}"


def test_cli_prepare_prints_sizes(shared_data, tmp_path):
    result = runner.invoke(app, ["data", "prepare", "--raw", str(shared_data / "raw"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "8382" in result.output and "498" in result.output


def test_cli_prepare_without_raw_files_says_fetch(tmp_path):
    result = runner.invoke(app, ["data", "prepare", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "exposure data fetch" in result.output
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------- fetch


def test_fetch_from_mirror_verifies_hashes(shared_data, tmp_path):
    out = tmp_path / "raw"
    paths = data.fetch(shared_data / "MANIFEST.tsv", out, mirror=shared_data / "raw", show_progress=False)
    entries = data.read_manifest(shared_data / "MANIFEST.tsv")
    assert paths == [out / e.path for e in entries]
    for e in entries:
        assert sha(out / e.path) == e.sha256
        assert (out / e.path).stat().st_size == e.bytes
    # A second run finds everything in place and rewrites nothing: an empty mirror would fail
    # any copy it were asked for.
    stamps = {p: p.stat().st_mtime_ns for p in paths}
    (tmp_path / "empty").mkdir()
    data.fetch(shared_data / "MANIFEST.tsv", out, mirror=tmp_path / "empty", show_progress=False)
    assert {p: p.stat().st_mtime_ns for p in paths} == stamps


def test_cli_fetch_refuses_corrupted_mirror_file(shared_data, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(shared_data / "raw", mirror)
    bad = mirror / "clge" / "lcsts" / "val.tsv"
    bad.chmod(0o644)
    raw = bytearray(bad.read_bytes())
    raw[100] ^= 0x01
    bad.write_bytes(bytes(raw))
    entry = next(e for e in data.read_manifest(shared_data / "MANIFEST.tsv") if e.path == "clge/lcsts/val.tsv")

    out = tmp_path / "raw"
    result = runner.invoke(
        app,
        ["data", "fetch", "--out", str(out), "--mirror", str(mirror), "--manifest", str(shared_data / "MANIFEST.tsv")],
    )
    assert result.exit_code == 2, result.output
    assert "clge/lcsts/val.tsv" in result.output
    assert entry.sha256 in result.output
    assert hashlib.sha256(bytes(raw)).hexdigest() in result.output
    assert not (out / "clge" / "lcsts" / "val.tsv").exists()
    # Nothing else at that destination either (no temp file).
    assert not any(p.name.startswith(".val.tsv") for p in leftovers(out))


def test_cli_fetch_reads_mirror_from_env(shared_data, tmp_path):
    src = shared_data / "raw" / "clge" / "lcsts" / "test.tsv"
    manifest = write_manifest(
        tmp_path / "MANIFEST.tsv",
        [("clge/lcsts/test.tsv", sha(src), src.stat().st_size, "https://example.invalid/never-used")],
    )
    out = tmp_path / "raw"
    result = runner.invoke(
        app,
        ["data", "fetch", "--out", str(out), "--manifest", str(manifest)],
        env={"EXPOSURE_DATA_MIRROR": str(shared_data / "raw")},
    )
    assert result.exit_code == 0, result.output
    assert sha(out / "clge" / "lcsts" / "test.tsv") == sha(src)


def test_fetch_downloads_upstream_url(tmp_path):
    # file:// goes through the same urllib download path as https://, without needing internet.
    upstream = tmp_path / "upstream" / "a.tsv"
    upstream.parent.mkdir()
    upstream.write_bytes("标题\t内容\n".encode() * 50)
    manifest = write_manifest(
        tmp_path / "MANIFEST.tsv", [("clge/x/a.tsv", sha(upstream), upstream.stat().st_size, upstream.as_uri())]
    )
    out = tmp_path / "raw"
    assert data.fetch(manifest, out, show_progress=False) == [out / "clge" / "x" / "a.tsv"]
    assert (out / "clge" / "x" / "a.tsv").read_bytes() == upstream.read_bytes()


def test_fetch_download_with_wrong_hash_leaves_nothing(tmp_path):
    upstream = tmp_path / "a.tsv"
    upstream.write_bytes(b"t\tc\n")
    expected = "0" * 64
    manifest = write_manifest(tmp_path / "MANIFEST.tsv", [("clge/a.tsv", expected, 4, upstream.as_uri())])
    out = tmp_path / "raw"
    with pytest.raises(UserError) as e:
        data.fetch(manifest, out, show_progress=False)
    msg = str(e.value)
    assert "clge/a.tsv" in msg and expected in msg and sha(upstream) in msg
    assert leftovers(out) == []


def test_fetch_replaces_stale_file(shared_data, tmp_path):
    src = shared_data / "raw" / "clge" / "lcsts" / "test.tsv"
    manifest = write_manifest(tmp_path / "M.tsv", [("clge/lcsts/test.tsv", sha(src), src.stat().st_size, "x")])
    stale = tmp_path / "raw" / "clge" / "lcsts" / "test.tsv"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    data.fetch(manifest, tmp_path / "raw", mirror=shared_data / "raw", show_progress=False)
    assert sha(stale) == sha(src)


def test_fetch_unreachable_upstream_suggests_mirror(tmp_path):
    manifest = write_manifest(tmp_path / "M.tsv", [("clge/a.tsv", "0" * 64, 1, (tmp_path / "nope").as_uri())])
    with pytest.raises(UserError, match="--mirror"):
        data.fetch(manifest, tmp_path / "raw", show_progress=False)


# ---------------------------------------------------------------------------------- manifest


def test_read_manifest_columns_by_name(tmp_path):
    m = tmp_path / "M.tsv"
    m.write_text("upstream\tbytes\tpath\tsha256\nhttp://u\t12\tclge/a.tsv\t" + "a" * 64 + "\n\n")
    assert data.read_manifest(m) == [data.ManifestEntry("clge/a.tsv", "a" * 64, 12, "http://u")]


@pytest.mark.parametrize(
    "body, where",
    [
        ("path\tsha256\tbytes\n", ":1:"),  # missing column
        ("path\tsha256\tbytes\tupstream\nclge/a\t" + "a" * 64 + "\t12\n", ":2:"),  # short row
        ("path\tsha256\tbytes\tupstream\n\nclge/a\tnothex\t12\tu\n", ":3:"),
        ("path\tsha256\tbytes\tupstream\nclge/a\t" + "a" * 64 + "\ttwelve\tu\n", ":2:"),
        ("path\tsha256\tbytes\tupstream\n../a\t" + "a" * 64 + "\t1\tu\n", ":2:"),  # escapes out dir
    ],
)
def test_read_manifest_malformed_names_line(tmp_path, body, where):
    m = tmp_path / "M.tsv"
    m.write_text(body)
    with pytest.raises(UserError) as e:
        data.read_manifest(m)
    assert f"{m}{where}" in str(e.value)


# ---------------------------------------------------------------------------------- read_raw


def raw_file(tmp_path: Path, content: bytes, name: str = "f.tsv") -> Path:
    p = tmp_path / name
    p.write_bytes(content)
    return p


def test_read_raw_clge_crlf_bom_blank_and_strip(tmp_path):
    p = raw_file(
        tmp_path,
        "\ufeff标题一\t内容一\r\n\r\n   \n 标题二 \t 内容二\u3000\r\n\t只有内容\n标题三\t内容\u2028续\n".encode(),
    )
    pairs, problems = data.read_raw(p, "clge")
    assert pairs == [
        Pair(source="内容一", target="标题一"),
        Pair(source="内容二", target="标题二"),
        # U+2028 is not a line break in these files: the pair stays whole.
        Pair(source="内容\u2028续", target="标题三"),
    ]
    assert problems == []


def test_read_raw_drops_only_one_trailing_cr(tmp_path):
    p = raw_file(tmp_path, b"t\tc\r\r\n")
    # The remaining \r is whitespace and is stripped with the content.
    assert data.read_raw(p, "clge") == ([Pair(source="c", target="t")], [])


def test_read_raw_reports_wrong_field_count_with_line(tmp_path):
    p = raw_file(tmp_path, b"t1\tc1\n\nonly one field\nt2\tc2\textra\nt3\tc3\n")
    pairs, problems = data.read_raw(p, "clge")
    assert [x.target for x in pairs] == ["t1", "t3"]
    assert problems == [
        f"{p}:3: expected 2 tab-separated fields, found 1",
        f"{p}:4: expected 2 tab-separated fields, found 3",
    ]


def test_read_raw_invalid_utf8_names_line(tmp_path):
    p = raw_file(tmp_path, "a\tb\n\nc\td\n".encode() + b"e\t\xff\xfe\n")
    with pytest.raises(UserError) as e:
        data.read_raw(p, "clge")
    assert f"{p}:4:" in str(e.value)


def test_read_raw_csl_benchmark_field_order_and_marker(tmp_path):
    p = raw_file(
        tmp_path,
        "to title\t这是内容\t这是标题\n"
        "title\t内容二\t标题二\n"
        "to title\t内容三\n"
        "to title\t 内容四 \t 标题四 \r\n".encode(),
    )
    pairs, problems = data.read_raw(p, "csl-benchmark")
    assert pairs == [Pair(source="这是内容", target="这是标题"), Pair(source="内容四", target="标题四")]
    assert len(problems) == 2
    assert problems[0].startswith(f"{p}:2:") and "to title" in problems[0]
    assert problems[1] == f"{p}:3: expected 3 tab-separated fields, found 2"


# ---------------------------------------------------------------------------------- recipe


A, B, C, D = (Pair(source=f"c{i}", target=f"t{i}") for i in "abcd")


def test_dedupe_keeps_first_occurrence_in_order():
    same_title_other_content = Pair(source="other", target="ta")
    assert data.dedupe([B, A, B, same_title_other_content, A, C]) == [B, A, same_title_other_content, C]


def test_minus_drops_shared_title_or_content():
    shares_title = Pair(source="fresh", target="ta")
    shares_content = Pair(source="cb", target="fresh")
    crossed = Pair(source="ta", target="cb")  # a title equal to B's content does not count
    assert data.minus([shares_title, C, shares_content, crossed, D], [A, B]) == [C, crossed, D]
    assert data.minus([A, C], []) == [A, C]


# ---------------------------------------------------------------------------------- read_pairs


def test_read_pairs_errors_name_file_and_line(tmp_path):
    p = raw_file(tmp_path, b"t\tc\nno tab here\n")
    with pytest.raises(UserError) as e:
        data.read_pairs(p)
    assert f"{p}:2:" in str(e.value)
    with pytest.raises(UserError, match="exposure data prepare"):
        data.read_pairs(tmp_path / "missing.tsv")
