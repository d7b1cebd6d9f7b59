import dataclasses

import pytest

from utils.config import MODE_VARIABLE, PRESETS, get_config


def test_quick_is_the_default(monkeypatch):
    monkeypatch.delenv(MODE_VARIABLE, raising=False)
    assert get_config().mode == "quick"


def test_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(MODE_VARIABLE, "FULL")
    config = get_config()
    assert config.mode == "full" and config.image_size == PRESETS["full"]["image_size"]


def test_unknown_mode_names_the_variable(monkeypatch):
    monkeypatch.setenv(MODE_VARIABLE, "fast")
    with pytest.raises(ValueError, match=f"{MODE_VARIABLE}='fast'.*full.*quick"):
        get_config()


def test_modes_differ_only_in_sizes():
    quick, full = get_config("quick"), get_config("full")
    differing = {f.name for f in dataclasses.fields(quick) if getattr(quick, f.name) != getattr(full, f.name)}
    assert differing <= {"mode", "image_size", "num_epochs", "num_samples", "batch_size", "search_image_size",
                         "search_epochs", "search_samples"}
    assert full.image_size > quick.image_size and full.num_epochs > quick.num_epochs
