"""The package's structure: every module imports on its own in any order (no import cycle), one
registry type serves every family, `exposure ls` lists what a spec may say, and a spec given by
bare name is found from the repository and from an installed wheel."""

import importlib
import importlib.util
import pkgutil
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import exposure_cli
from exposure_cli.cli import app
from exposure_cli.errors import UserError
from exposure_cli.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(exposure_cli.__path__, "exposure_cli.")
                  if not m.name.endswith("__main__") and not m.name.startswith("exposure_cli.experiments"))


def _module_level_imports(name: str) -> set[str]:
    """The exposure_cli modules `name` imports at module level (function-local imports excluded:
    they run later and cannot form an import cycle)."""
    import ast

    spec = importlib.util.find_spec(name)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    package = name if spec.submodule_search_locations else name.rpartition(".")[0]
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else node.module
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if importlib.util.find_spec(base) and _is_module(full) else base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("exposure_cli")}


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, AttributeError, ValueError):
        return False


def test_no_import_cycle_and_every_module_imports_in_any_order():
    mods = [m for m in _modules() if m != "exposure_cli.executors.ray"]  # needs the ray extra
    assert len(mods) > 30
    graph = {m: _module_level_imports(m) for m in mods}
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
        if state.get(m) == 2 or m not in graph:
            return
        state[m] = 1
        for dep in sorted(graph[m]):
            visit(dep, path + [m])
        state[m] = 2

    for m in mods:
        visit(m, [])
    # and for real, in fresh interpreters: forwards, backwards and shuffled
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    for order in [mods, mods[::-1], random.Random(0).sample(mods, len(mods))]:
        r = subprocess.run([sys.executable, "-c", code, *order], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-2000:]


class Base:
    name = ""


class A(Base):
    name = "alpha"


def test_registry_rejects_duplicates_and_foreign_classes_and_suggests_near_names():
    reg = Registry("widget", Base)
    reg.register()(A)
    with pytest.raises(ValueError, match="widget 'alpha' is registered twice"):
        reg.add("alpha", A)
    with pytest.raises(TypeError, match="must be a subclass of Base"):
        reg.add("beta", int)
    with pytest.raises(UserError) as e:
        reg.get("alpah", "spec.widget")
    assert str(e.value) == "spec.widget: unknown widget 'alpah' (available: alpha); did you mean 'alpha'?"
    # lazy entries import their module only when chosen
    reg.add("lazy", "json:JSONDecoder")
    with pytest.raises(TypeError, match="must be a subclass of Base"):
        reg.get("lazy")
    reg2 = Registry("thing")
    reg2.add("decoder", "json:JSONDecoder")
    import json

    assert reg2.get("decoder") is json.JSONDecoder and reg2.names() == ["decoder"]


# Some members of each family, written out by hand: the families themselves come from registry.FAMILIES.
MEMBERS = {"methods": {"baseline", "random_replace", "gradient_penalty", "scheduled_sampling", "adversarial"},
           "strategies": {"study", "standard"}, "executors": {"serial", "pool", "ray"},
           "tokenizers": {"char", "wordpiece"}, "inits": {"scratch", "pretrained"},
           "diagnostics": {"teacher_forced", "robustness", "search", "beam_curse"}}


def test_every_family_is_a_registry_that_families_finds_on_its_own():
    from exposure_cli.registry import FAMILIES

    for m in _modules():  # every module imported: every family has recorded itself
        if m != "exposure_cli.executors.ray":
            importlib.import_module(m)
    assert set(FAMILIES) == set(MEMBERS)
    for name, reg in FAMILIES.items():
        assert isinstance(reg, Registry) and MEMBERS[name] <= set(reg.names()), name
    # a fresh interpreter that imports only registry.families() finds every one of them
    code = "from exposure_cli.registry import families; print(' '.join(families()))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.split() == sorted(FAMILIES), r.stdout + r.stderr


def test_ls_lists_specs_methods_parameters_and_strategies():
    r = runner.invoke(app, ["ls"], terminal_width=250)
    assert r.exit_code == 0, r.output
    for text in ("csl.yaml", "lcsts.yaml", "smoke.yaml", "random_replace", "pool", "the article", "gradient_penalty",
                 "embedding_rows", "strategies: standard, study", "executors", "serial"):
        assert text in r.output, text
    r = runner.invoke(app, ["ls", "methods"], terminal_width=250)
    assert "0.3" in r.output and "ratio" in r.output and "csl.yaml" not in r.output
    r = runner.invoke(app, ["ls", "nothing"])
    assert r.exit_code == 2 and "expected one of specs, methods" in r.output
    for family, members in MEMBERS.items():  # each family alone, listed from its registry
        r = runner.invoke(app, ["ls", family], terminal_width=250)
        assert r.exit_code == 0 and all(m in r.output for m in members), (family, r.output)


def test_a_bare_spec_name_is_found_in_experiments(tmp_path, monkeypatch):
    from exposure_cli.spec import find_spec, load_spec

    monkeypatch.chdir(ROOT)
    assert find_spec("csl.yaml") == Path("experiments/csl.yaml")
    assert load_spec("smoke").name == "smoke"
    monkeypatch.chdir(tmp_path)  # no ./experiments here: the packaged copy
    assert find_spec("csl.yaml").read_bytes() == (ROOT / "experiments/csl.yaml").read_bytes()
    with pytest.raises(UserError, match="nope.yaml: spec file not found .*csl.yaml"):
        find_spec("nope.yaml")


def test_a_wheel_ships_the_specs_and_runs_one_by_bare_name(tmp_path):
    import shutil

    src = tmp_path / "src"  # a copy, so that the build leaves nothing in the checkout
    for name in ("exposure_cli", "experiments"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("exposure-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"exposure_cli/experiments/csl.yaml", "exposure_cli/experiments/smoke.yaml"} <= set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # the installed package alone (not the checkout) on the path, run from a directory with no experiments/
    work = tmp_path / "work"
    work.mkdir()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import exposure_cli; assert exposure_cli.__file__.startswith(sys.argv[1]);"
            "from exposure_cli.cli import main; sys.argv = ['exposure', 'run', 'smoke.yaml', '--set', 'train.epochs=0'];"
            "main()")
    r = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, cwd=work)
    # the packaged spec was found and read: its error is about the override, not a missing file
    assert r.returncode == 2, r.stdout + r.stderr
    assert "smoke.yaml: train.epochs: expected at least 1" in r.stderr and "not found" not in r.stderr


def test_no_folder_of_the_package_grows_past_thirty_modules():
    """The brief's rule for a growing package: group by stage (decode/, report/, runner/, ...) rather
    than let one flat folder pass thirty files."""
    folders = {p.parent for p in (ROOT / "exposure_cli").rglob("*.py")}
    sizes = {str(f.relative_to(ROOT)): len(list(f.glob("*.py"))) for f in folders}
    assert max(sizes.values()) <= 30, sizes
