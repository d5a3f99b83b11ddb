"""Tests for bki_tf.bki.detector: the in-memory `bki.detect` against the run-folder scan."""

import os
import shutil

import numpy as np
import pytest
from conftest import tiny_attack_config

from bki_tf import artifacts, bki, tokenization
from bki_tf.bki import detector, keywords, scoring
from bki_tf.runs import attack, pipeline


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_imdb_dir):
    workdir = str(tmp_path_factory.mktemp("detector") / "run")
    config = tiny_attack_config(
        tiny_imdb_dir, poison_rate=0.15, max_len=24, epochs=3, learning_rate=1e-2
    )
    attack.run_attack(config, workdir, verbose=0)
    return workdir


@pytest.mark.parametrize("variant", ["paper", "refined"])
def test_detect_equals_the_run_folder_scan(tiny_run, tmp_path, variant):
    workdir = str(tmp_path / "run")
    shutil.copytree(tiny_run, workdir)
    config = bki.BKIConfig(p=3, variant=variant, alpha=0.5)
    record = pipeline.run_scan(workdir, config, progress=False)
    run = attack.load_run(workdir)
    result = bki.detect(
        run.model,
        run.train.texts,
        run.vocabulary,
        labels=run.train.labels,
        config=config,
        max_len=run.config.max_len,
    )
    assert result.keyword == record.keyword
    assert result.keyword_label == record.keyword_label
    assert result.flagged.tolist() == record.flagged
    assert result.selection.to_dict() == record.result
    stored = np.load(os.path.join(workdir, record_folder(variant), "scores.npz"))
    np.testing.assert_array_equal(np.concatenate(result.scores), stored["scores"])
    # The detector contract: decisions = flagged texts, one score per text.
    assert result.detection.flagged.tolist() == record.flagged
    ev = result.evaluate(run.train.is_poisoned)
    assert ev.to_dict() == record.detection


def record_folder(variant):
    return "scan" if variant == "paper" else "scan_refined"


def test_detect_accepts_token_ids_and_round_trips(tiny_run):
    run = attack.load_run(tiny_run)
    ids, lengths = tokenization.encode(run.vectorizer(), run.train.texts)
    from_text = bki.detect(
        run.model, run.train.texts, run.vocabulary, config=bki.BKIConfig(p=2), max_len=24
    )
    from_ids = bki.detect(run.model, ids, run.vocabulary, config=bki.BKIConfig(p=2))
    from_lists = bki.detect(
        run.model,
        [ids[i, : lengths[i]] for i in range(len(ids))],
        run.vocabulary,
        config=bki.BKIConfig(p=2),
    )
    for other in (from_ids, from_lists):
        assert other.keyword == from_text.keyword
        np.testing.assert_array_equal(other.flagged, from_text.flagged)
    back = bki.BKIResult.from_dict(from_text.to_dict())
    assert back.to_dict() == from_text.to_dict()
    assert "BKI keyword" in back.summary()


def test_detect_on_a_hand_made_table_matches_the_keyword_step():
    """`select` is exactly `keywords.identify_keyword` plus the detector contract."""
    vocab = ["", "[UNK]", "a", "b", "c", "cf"]
    ids = np.array([[2, 5, 3], [5, 4, 0], [2, 3, 4]], np.int32)
    lengths = np.array([3, 2, 3])
    scores = [np.array([0.1, 0.9, 0.2]), np.array([0.8, 0.1]), np.array([0.3, 0.2, 0.1])]
    result = detector.select(ids, lengths, scores, vocab, bki.BKIConfig(p=1))
    assert result.keyword == "cf"
    assert result.flagged.tolist() == [0, 1]
    np.testing.assert_array_equal(result.detection.scores, [0.9, 0.8, 0.0])
    expected = keywords.identify_keyword(
        [ids[i, : lengths[i]] for i in range(3)], scores, vocab, p=1
    )
    assert result.selection.to_dict() == expected.to_dict()


@pytest.mark.parametrize(
    "texts, vocab, kwargs, match",
    [
        ([], ["", "[UNK]", "a"], {}, "texts is empty"),
        (["a"], ["a", "b"], {}, "vocabulary must start"),
        (["a b"], ["", "[UNK]", "a"], {"labels": [0, 1]}, "labels must be 1"),
        (["a b"], ["", "[UNK]", "a"], {"config": bki.BKIConfig(variant="refined")}, "labels"),
        (np.array([[2, 0, 2]]), ["", "[UNK]", "a"], {}, "right-padded"),
        ([1.5], ["", "[UNK]", "a"], {}, "neither a string"),
    ],
)
def test_detect_rejects_bad_input(tiny_run, texts, vocab, kwargs, match):
    run = attack.load_run(tiny_run)
    with pytest.raises(ValueError, match=match):
        bki.detect(run.model, texts, vocab, **kwargs)


def test_a_killed_scan_resumes_from_its_chunks_with_identical_scores(
    tiny_run, tmp_path, monkeypatch
):
    """Dies after the first checkpoint; the rerun computes only the rest, same scores."""
    monkeypatch.setattr(pipeline, "CHECKPOINT_TEXTS", 4)
    full = str(tmp_path / "full")
    shutil.copytree(tiny_run, full)
    config = bki.BKIConfig(p=3, variant="refined", alpha=0.5, scan_batch_size=16)
    uninterrupted = pipeline.run_scan(full, config, progress=False)
    assert not os.path.exists(os.path.join(full, "scan_refined", "chunks"))

    killed = str(tmp_path / "killed")
    shutil.copytree(tiny_run, killed)
    real = scoring.Scorer.score_unit
    calls = []

    def dies_after_two_units(self, *args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # What a kill looks like to the code: no cleanup.
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(scoring.Scorer, "score_unit", dies_after_two_units)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_scan(killed, config, progress=False)
    chunks = os.listdir(os.path.join(killed, "scan_refined", "chunks"))
    assert chunks and not os.path.exists(os.path.join(killed, "scan_refined", "scan.json"))
    monkeypatch.setattr(scoring.Scorer, "score_unit", real)
    resumed = pipeline.run_scan(killed, config, progress=False)
    assert resumed.resumed_units >= 1
    assert resumed.keyword == uninterrupted.keyword
    assert resumed.flagged == uninterrupted.flagged
    assert resumed.result == uninterrupted.result
    a = np.load(os.path.join(full, "scan_refined", "scores.npz"))
    b = np.load(os.path.join(killed, "scan_refined", "scores.npz"))
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])


def test_a_damaged_or_foreign_checkpoint_is_recomputed(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "CHECKPOINT_TEXTS", 4)
    workdir = str(tmp_path / "run")
    shutil.copytree(tiny_run, workdir)
    config = bki.BKIConfig(p=3)
    chunk_dir = os.path.join(workdir, "scan", "chunks")
    os.makedirs(chunk_dir)
    with open(os.path.join(chunk_dir, "deletion-00000.npz"), "wb") as f:
        f.write(b"not a checkpoint")
    np.savez(
        os.path.join(chunk_dir, "deletion-00001.npz"),
        plan=np.asarray("another plan"),
        texts=np.arange(4),
        scores=np.zeros(100, np.float32),
    )
    record = pipeline.run_scan(workdir, config, progress=False)
    assert record.resumed_units == 0
    reference = str(tmp_path / "reference")
    shutil.copytree(tiny_run, reference)
    assert pipeline.run_scan(reference, config, progress=False).result == record.result


def test_unit_wise_scoring_equals_one_call(tiny_run):
    """Any unit order gives the scores of `score_all` bit for bit (fast and simple)."""
    run = attack.load_run(tiny_run)
    ids, lengths = tokenization.encode(run.vectorizer(), run.train.texts)
    for kind, method in (("deletion", "fast"), ("deletion", "simple"), ("prefix", "fast")):
        scorer = scoring.Scorer(run.model, kind, method, 16)
        whole = scorer.score_all(ids, lengths)
        units = scorer.units(lengths)
        assert sorted(np.concatenate(units).tolist()) == np.flatnonzero(lengths).tolist()
        for k in reversed(range(len(units))):
            for i, values in zip(units[k], scorer.score_unit(ids, lengths, k)):
                np.testing.assert_array_equal(values, whole[int(i)])


def test_scan_json_is_a_scan_record(tiny_run, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(tiny_run, workdir)
    record = pipeline.run_scan(workdir, bki.BKIConfig(p=3), progress=False)
    stored = artifacts.read_json(os.path.join(workdir, "scan", "scan.json"))
    assert pipeline.ScanRecord.from_dict(stored) == record
    assert stored["num_flagged"] == len(record.flagged)
    assert "keyword" in record.summary()


def test_span_scan_scores_spans_and_never_shares_one_word_scores(tiny_run, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(tiny_run, workdir)
    pipeline.run_scan(workdir, bki.BKIConfig(p=3), progress=False)  # One-word scores on disk.
    config = bki.BKIConfig(p=3, variant="plus", span=2)
    record = pipeline.run_scan(workdir, config, progress=False)
    assert record.deletion_scores_from is None
    assert record.config["span"] == 2 and record.config["method"] == "generic"
    run = attack.load_run(workdir)
    ids, lengths = run.encode(run.train.texts)
    expected = scoring.span_scores(run.model, ids, lengths, 2)
    stored = np.load(os.path.join(workdir, "scan_plus", "scores.npz"))
    np.testing.assert_array_equal(stored["scores"], np.concatenate(expected))
    result = bki.detect(
        run.model, run.train.texts, run.vocabulary, labels=run.train.labels, config=config,
        max_len=run.config.max_len,
    )  # fmt: skip
    assert result.flagged.tolist() == record.flagged
    assert result.plus.to_dict() == record.plus
    # The one-word plus scan is another scan: the span scan is not reused for it.
    with pytest.raises(pipeline.StaleScanError, match="other settings"):
        pipeline.run_scan(workdir, bki.BKIConfig(p=3, variant="plus"), progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"span": 0}, "span must be >= 1"),
        ({"span": 2}, "is a BKI\\+ setting"),
        ({"span": 2, "variant": "plus", "method": "fast"}, "scored by the generic method"),
        ({"span": True, "variant": "plus"}, "BKIConfig.span must be an integer"),
    ],
)
def test_span_config_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bki.BKIConfig(**kwargs)
