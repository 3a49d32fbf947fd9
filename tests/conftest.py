"""Fixtures shared by the test modules (project-wide set-up lives in the root conftest.py)."""
import pytest


@pytest.fixture
def no_model_load(monkeypatch):
    """Fails the test if a checkpoint is loaded (the checks must come first)."""
    import samp.models
    import samp.models.registry

    def forbidden(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(samp.models, "load", forbidden)
    monkeypatch.setattr(samp.models.registry, "load", forbidden)
