"""Shared fixtures: paths to the test model files."""

from pathlib import Path

import pytest

MODELS = Path(__file__).parent / "models"


@pytest.fixture
def models_dir() -> Path:
    return MODELS


@pytest.fixture(autouse=True)
def _private_config_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app saves settings per user (XDG_CONFIG_HOME) and keeps trees (XDG_CACHE_HOME): never
    the real ones in tests."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _reproducible_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports carry the time they were written: fixed here, so two renders of one run compare equal
    even across a second's boundary (the exporters honour SOURCE_DATE_EPOCH)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1795000000")


@pytest.fixture(scope="module")
def showcase():
    """The showcase sample calibrated once per test module: (model, catalog, 4 probe batches, stats)."""
    from tui_quantreport.engine import Session, Settings, load_model, open_batches
    from tui_quantreport.engine.quantsim import ProbeRecorder

    loaded = load_model("showcase")
    session = Session(loaded.model)
    recorder = ProbeRecorder(open_batches(loaded), 4)
    stats = session.calibrate(recorder, Settings.build())
    return loaded.model, session.catalog, recorder.probes, stats
