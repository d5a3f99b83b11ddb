"""Tests of the grid's multi-seed summary (`bki_tf.runs.reproduction`), no training."""

import json
import statistics

import pytest

from bki_tf.bki.detector import BKIConfig
from bki_tf.runs import reproduction


def _row(cell, seed, precision, asr_after, clean=False, found=True):
    row = {
        "cell": cell,
        "seed": seed,
        "clean_run": clean,
        "dataset": "imdb",
        "trigger": "time flies like an arrow",
        "target": "negative",
        "poison_rate": 0.0 if clean else 0.03,
        "keyword": "arrow",
        "keyword_label_name": None,
        "precision": precision,
        "recall": 1.0,
        "removed": 3,
        "removed_share": 0.01,
        "asr_before": 0.99,
        "accuracy_before": 0.8,
        "asr_after": asr_after,
        "accuracy_after": 0.79,
        "untriggered_target_share_after": None,
        "asr_clean_model": None,
        "backdoor_found": found,
    }
    return row


def test_seed_summary_is_the_mean_and_population_std():
    reports = [
        _row("a", 0, 0.9, 0.10),
        _row("a", 1, 1.0, 0.20),
        _row("a", 2, 0.8, 0.15, found=False),
        _row("b", 0, 0.5, 0.30),
    ]
    summary = reproduction.seed_summary(reports)
    assert [s["cell"] for s in summary] == ["a", "b"]
    a = summary[0]
    assert a["seeds"] == [0, 1, 2]
    assert a["precision_mean"] == pytest.approx(0.9)
    assert a["precision_std"] == pytest.approx(statistics.pstdev([0.9, 1.0, 0.8]))
    assert a["asr_after_mean"] == pytest.approx(0.15)
    assert a["backdoor_found"] == pytest.approx(2 / 3)
    assert a["asr_clean_model_mean"] is None and a["asr_clean_model_std"] is None
    assert summary[1]["precision_std"] == 0.0


def test_tables_carry_the_seed_summary(tmp_path):
    reports = [_row("a", 0, 0.9, 0.10), _row("a", 1, 1.0, 0.20)]
    reproduction.write_tables(reports, str(tmp_path), variant="plus")
    md = open(tmp_path / "tables_plus.md", encoding="utf-8").read()
    assert "Mean ± std over seeds" in md and "95.00 ± 5.00" in md
    data = json.load(open(tmp_path / "tables_plus.json", encoding="utf-8"))
    assert data["seed_summary"][0]["precision_mean"] == pytest.approx(0.95)
    # Without seeds the tables hold no summary.
    single = {k: v for k, v in reports[0].items() if k != "seed"}
    reproduction.write_tables([single], str(tmp_path / "one"), variant="paper")
    assert (
        json.load(open(tmp_path / "one" / "tables.json", encoding="utf-8"))["seed_summary"] is None
    )
    assert "Mean ± std" not in open(tmp_path / "one" / "tables.md", encoding="utf-8").read()


def test_seed_folders_and_bad_seed_lists():
    cell = reproduction.GridCell("imdb", None)
    assert reproduction.seed_folder(cell, None) == "imdb_clean"
    assert reproduction.seed_folder(cell, 2) == "imdb_clean_seed2"
    for seeds in ([], [0, 0]):
        with pytest.raises(ValueError, match="seeds must be distinct"):
            reproduction.run_grid([cell], {}, BKIConfig(), "/nonexistent", seeds=seeds)


def test_check_seeds():
    assert reproduction.check_seeds(["2", 0, 1]) == [2, 0, 1]
    for seeds in ([], [3, 3], ["x"], [1.5], [None]):
        with pytest.raises(ValueError, match="seeds must be distinct integers"):
            reproduction.check_seeds(seeds)
