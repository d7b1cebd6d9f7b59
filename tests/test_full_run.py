"""The full-mode page's commands (book/full_run.md), run end to end on a small sample at full mode's sizes.

Full mode differs from quick mode only in sizes, so it is not dead code if it runs: 512-pixel images, batch 16,
the disk cache (forced here by a cache limit of 0, as 10,712 real images would force it), one epoch on a few
images, then the evaluation of the saved model and its submission, without training again."""
import json
import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "book" / "full_run.md"


def test_the_page_gives_the_commands_this_test_runs():
    text = PAGE.read_text()
    for command in ("python -m utils.kaggle_download", "python -m utils.train --run-dir",
                    "python -m utils.evaluate --run-dir", "UNET_BOOK_MODE=full", "drive.mount"):
        assert command in text, command


@pytest.mark.main_stack_only  # 50 s; the oldest stack runs the same path at quick sizes in chapter 7
@pytest.mark.filterwarnings("ignore:The least populated class in y:UserWarning")  # 24 images
def test_full_mode_trains_and_evaluates_at_its_real_sizes(small_sample, tmp_path, monkeypatch, capsys):
    from utils import data, evaluate, train
    from utils.config import get_config

    monkeypatch.setenv("UNET_BOOK_MODE", "full")
    monkeypatch.setenv("UNET_BOOK_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    monkeypatch.setattr(data, "MEMORY_CACHE_LIMIT", 0)  # every split goes to the disk cache
    full = get_config()
    assert (full.image_size, full.batch_size) == (512, 16)
    run_dir = tmp_path / "run"
    arguments = ["--run-dir", str(run_dir), "--data", str(small_sample), "--epochs", "1"]
    train.main(arguments)
    out = capsys.readouterr().out
    assert "1 epochs logged" in out and (run_dir / "best.keras").exists()
    assert any((tmp_path / "cache").rglob("cache*")), "the disk cache was not used"

    evaluate.main(["--run-dir", str(run_dir), "--data", str(small_sample)])
    out = capsys.readouterr().out
    assert "512 px" in out and "Submission:" in out
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert result["image_size"] == 512 and 0 <= result["test_score"] <= 1
    assert set(result["by_tta"]) == {"none", "flip"}  # flip TTA chosen on validation, both reported on test
    assert result["test_score"] == result["by_tta"][result["tta"]]["test_score"]
    submission = pd.read_csv(run_dir / "submission.csv", dtype=str)
    assert list(submission.columns) == ["ImageId", "EncodedPixels"]
    assert len(submission) == result["submission_rows"] == 3
    assert all(text == "-1" or re.fullmatch(r"\d+( \d+)*", text) for text in submission["EncodedPixels"])


def test_evaluating_a_folder_without_a_model_says_what_to_do(tmp_path, small_sample):
    from utils import evaluate

    with pytest.raises(FileNotFoundError, match="best.keras is missing: train first"):
        evaluate.evaluate_run(tmp_path / "nothing-here", small_sample)
