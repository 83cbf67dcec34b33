import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared upstream data (`../shared/data`), which is never committed to this repo."""
    path = Path(os.environ.get("EXPOSURE_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "raw").is_dir():
        pytest.fail(f"shared data not found at {path}: set EXPOSURE_SHARED_DATA to the folder holding raw/")
    return path


@pytest.fixture(scope="session")
def prepared_data(shared_data, tmp_path_factory) -> Path:
    """The project's splits, built by `prepare` from the shared raw files (never from a checkout's data/)."""
    from exposure_cli.data import prepare

    out = tmp_path_factory.mktemp("data")
    prepare(shared_data / "raw", out)
    return out
