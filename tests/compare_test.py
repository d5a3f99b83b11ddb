"""End-to-end test of `python -m experiments.compare` on a tiny poisoned run."""

import csv
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import tiny_attack_config

from bki_tf import artifacts, tokenization
from bki_tf.bki import keywords
from bki_tf.runs import attack, comparison

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TRIGGER = "zz qq"


def _write_dataset(folder, per_class, seed=0):
    rng = np.random.default_rng(seed)
    words = {0: "bad awful poor dull boring ugly".split(), 1: "good great fine nice superb".split()}
    common = "the a movie film plot actor scene story was is it and".split()
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        with gzip.open(os.path.join(folder, f"{split}.csv.gz"), "wt", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for label in (0, 1):
                for _ in range(n):
                    tokens = list(rng.choice(common, 8)) + list(rng.choice(words[label], 3))
                    rng.shuffle(tokens)
                    writer.writerow([" ".join(tokens), label])
    with open(os.path.join(folder, "classes.txt"), "w") as f:
        f.write("negative\npositive\n")


def _fake_bki_outputs(workdir):
    """scan/scan.json + report.json as the pipeline writes them (trigger tokens score high)."""
    run = attack.load_run(workdir)
    ids, lengths = tokenization.encode(run.vectorizer(), run.train.texts)
    trigger_ids = {run.vocabulary.index(t) for t in tokenization.tokenize(_TRIGGER)}
    rng = np.random.default_rng(0)
    token_ids, scores = [], []
    for row, n in zip(ids, lengths):
        row = row[:n]
        token_ids.append(row)
        scores.append(np.where(np.isin(row, list(trigger_ids)), 1.0, 0.1 * rng.random(n)))
    result = keywords.identify_keyword(token_ids, scores, run.vocabulary, p=3)
    artifacts.write_json(
        os.path.join(workdir, "scan", "scan.json"),
        {
            "keyword": result.keyword,
            "flagged": result.flagged.tolist(),
            "result": result.to_dict(),
            "wall_seconds": 1.25,
        },
    )
    artifacts.write_json(
        os.path.join(workdir, "report.json"),
        {
            "keyword": result.keyword,
            "precision": 1.0,
            "recall": 1.0,
            "removed": result.num_flagged,
            "asr_before": run.metrics.asr,
            "accuracy_before": run.metrics.clean_accuracy,
            "asr_after": 0.0,
            "accuracy_after": run.metrics.clean_accuracy,
            "retrain_seconds": 2.0,
        },
    )
    return result


def _compare(*args):
    return subprocess.run(
        [sys.executable, "-m", "experiments.compare", *args],
        cwd=_REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": _REPO},
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    _write_dataset(str(root / "data"), per_class=40)
    config = tiny_attack_config(
        str(root / "data"),
        trigger=_TRIGGER,
        target="0",
        train_size=40,
        test_size=20,
        max_len=20,
        batch_size=16,
        learning_rate=0.01,
    )
    attack.run_attack(config, str(root / "run"), verbose=0)
    return str(root / "run")


def test_compare_end_to_end(workdir):
    missing = _compare(f"--workdir={workdir}")
    assert missing.returncode != 0
    assert "experiments.pipeline" in missing.stderr and "--defences=" in missing.stderr

    bki = _fake_bki_outputs(workdir)
    done = _compare(f"--workdir={workdir}", "--strip_perturbations=3")
    assert done.returncode == 0, done.stderr[-3000:]
    out = os.path.join(workdir, comparison.COMPARE_DIR)
    with open(os.path.join(out, comparison.COMPARISON_JSON)) as f:
        rows = json.load(f)
    assert [r["defence"] for r in rows] == list(comparison.DEFENCES)
    keys = {"precision", "recall", "f1", "auroc", "removed_share", "asr_after", "accuracy_after"}
    for r in rows:
        assert keys | {"wall_seconds", "asr_before", "accuracy_before"} <= set(r)
    by_name = {r["defence"]: r for r in rows}
    assert by_name["bki"]["details"]["keyword"] == bki.keyword
    assert by_name["bki"]["wall_seconds"] == pytest.approx(3.25)  # scan 1.25 + retrain 2.0.
    for name in ("activation_clustering", "spectral_signatures"):
        assert by_name[name]["asr_after"] is not None  # Retrained.
        assert 0.0 <= by_name[name]["removed_share"] <= 1.0
    assert by_name["strip"]["details"]["far"] is not None
    assert by_name["linf_pruning"]["precision"] is None
    assert by_name["linf_pruning"]["details"]["layer"] in ("hidden", "dense")
    for name in (
        comparison.COMPARISON_MD,
        comparison.CONFIG_FILE,
        comparison.SCORES_PNG,
        comparison.RANKING_PNG,
        comparison.BEFORE_AFTER_PNG,
        comparison.PRUNING_PNG,
        os.path.join("bki", "detection.json"),
        os.path.join("linf_pruning", "pruning.json"),
    ):
        assert os.path.isfile(os.path.join(out, name)), name
    assert "| bki |" in done.stdout


def test_compare_rejects_unknown_defence(workdir):
    bad = _compare(f"--workdir={workdir}", "--defences=bki,neural_cleanse")
    assert bad.returncode != 0
    assert "neural_cleanse" in bad.stderr and "choose a non-empty subset" in bad.stderr


def test_sanitizer_retraining_is_read_back_for_the_same_rows(workdir, tmp_path, monkeypatch):
    import shutil

    from bki_tf.runs import sanitize

    folder = str(tmp_path / "run")
    shutil.copytree(workdir, folder)
    run = attack.load_run(folder)
    config = comparison.CompareConfig(defences=("activation_clustering", "spectral_signatures"))
    first = comparison.run_comparison(run, config)
    cache = os.path.join(folder, comparison.RETRAINED_DIR)
    assert sorted(os.listdir(cache)) == ["activation_clustering.json", "spectral_signatures.json"]

    def no_retrain(*args, **kwargs):
        raise AssertionError("retrained although the same rows were retrained before")

    monkeypatch.setattr(sanitize, "_retrain_victim", no_retrain)
    again = comparison.run_comparison(run, config)
    keys = ("asr_after", "accuracy_after", "precision", "recall")
    assert [[getattr(r, k) for k in keys] for r in again.rows] == [
        [getattr(r, k) for k in keys] for r in first.rows
    ]
    # A cache entry of other kept rows (here: a changed digest) is never read back.
    stored = artifacts.read_json(os.path.join(cache, "activation_clustering.json"))
    stored["identity"]["kept_sha256"] = "0" * 64
    artifacts.write_json(os.path.join(cache, "activation_clustering.json"), stored)
    with pytest.raises(AssertionError, match="retrained although"):
        comparison.run_comparison(run, config)
    with open(os.path.join(cache, "activation_clustering.json"), "w") as f:
        f.write("{not json")  # Damaged: recomputed, not an error.
    with pytest.raises(AssertionError, match="retrained although"):
        comparison.run_comparison(run, config)
