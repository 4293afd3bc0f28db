"""Shared fixtures: paths to the test model files."""

from pathlib import Path

import pytest

MODELS = Path(__file__).parent / "models"


@pytest.fixture
def models_dir() -> Path:
    return MODELS
