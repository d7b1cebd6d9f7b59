"""Shared fixtures: one small generated sample for the whole test session."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory):
    """24 labelled and 3 unlabelled synthetic radiographs in the real data's layout (``.../siim``)."""
    from utils.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("sample"), num_train=24, num_test=3, seed=1)
