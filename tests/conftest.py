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
