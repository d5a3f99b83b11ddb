"""Tests for bki_tf.runs.comparison: BKI's row from the pipeline files, rows, config and plots."""

import json
import os

import numpy as np
import pytest

from bki_tf import detection
from bki_tf.baselines import pruning
from bki_tf.bki import keywords
from bki_tf.runs import comparison

VOCAB = ["", "[UNK]", "cf", "good", "movie", "bad", "plot"]
CF, GOOD, MOVIE, BAD, PLOT = 2, 3, 4, 5, 6


def _keyword_result(variant="paper"):
    """Texts 0 and 2 hold the trigger 'cf' with a high score; text 1 holds it with a low one."""
    ids = [
        np.array([GOOD, CF, MOVIE]),
        np.array([BAD, PLOT, CF]),
        np.array([CF, PLOT, MOVIE]),
        np.array([GOOD, MOVIE, PLOT]),
    ]
    scores = [
        np.array([0.1, 0.9, 0.2]),
        np.array([0.5, 0.4, 0.05]),
        np.array([0.8, 0.1, 0.1]),
        np.array([0.3, 0.2, 0.1]),
    ]
    kwargs = {}
    if variant == "refined":
        kwargs = dict(
            labels=np.array([0, 0, 0, 1]),
            local_scores=[np.zeros(3)] * 4,
            max_ngram=1,
            alpha=0.5,
        )
    return keywords.identify_keyword(ids, scores, VOCAB, p=2, variant=variant, **kwargs)


def test_bki_detection_scores_are_the_keywords_score():
    result = _keyword_result()
    assert result.keyword == "cf"
    scan = {"keyword": "cf", "flagged": result.flagged.tolist(), "result": result.to_dict()}
    det = comparison.bki_detection(json.loads(json.dumps(scan)), 4)
    # Text 1's top-2 are bad (0.5) and plot (0.4): 'cf' (0.05) is not suspicious there.
    np.testing.assert_allclose(det.scores, [0.9, 0.0, 0.8, 0.0])
    assert det.is_poison.tolist() == [True, False, True, False]
    ev = detection.evaluate(det, np.array([True, True, True, False]))
    assert ev.recall == pytest.approx(2 / 3) and ev.precision == 1.0
    assert ev.auroc == pytest.approx((1 + 1 + 0.5) / 3)


def test_bki_detection_refined_respects_the_keyword_label():
    result = _keyword_result("refined")
    scan = {
        "keyword": result.keyword,
        "flagged": result.flagged.tolist(),
        "result": result.to_dict(),
    }
    det = comparison.bki_detection(scan, 4)
    labels = np.array([0, 0, 0, 1])
    assert np.all(det.scores[labels != result.keyword_label] == 0)
    assert det.report["keyword_label"] == result.keyword_label


def test_bki_detection_errors():
    result = _keyword_result()
    scan = {"keyword": "cf", "flagged": [0, 2], "result": result.to_dict()}
    with pytest.raises(ValueError, match="holds 5"):
        comparison.bki_detection(scan, 5)
    with pytest.raises(ValueError, match="lacks 'flagged'"):
        comparison.bki_detection({"result": result.to_dict()}, 4)
    with pytest.raises(ValueError, match="differs"):
        comparison.bki_detection({**scan, "keyword": "movie"}, 4)
    with pytest.raises(ValueError, match="outside"):
        comparison.bki_detection({**scan, "flagged": [9]}, 4)


def test_bki_wall_seconds_rule():
    wall = comparison._bki_wall_seconds  # pylint: disable=protected-access
    report = {"attack_seconds": 100.0, "scan_seconds": 2.5, "retrain_seconds": 4.0}
    assert wall({"wall_seconds": 3.0}, report) == 7.0  # The attack is not the defence's time.
    assert wall({"wall_seconds": 3.0}, {}) == 3.0
    assert wall({}, report) is None


def test_check_bki_files_says_what_to_run(tmp_path):
    config = comparison.CompareConfig()
    with pytest.raises(FileNotFoundError, match="experiments.pipeline.*--defences=activation"):
        comparison.check_bki_files(str(tmp_path), config)
    comparison.check_bki_files(str(tmp_path), comparison.CompareConfig(defences=("strip",)))


def test_config_validation_and_round_trip():
    config = comparison.CompareConfig(defences=("strip", "bki"))
    assert config.defences == ("bki", "strip")  # Canonical order.
    back = comparison.CompareConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config
    with pytest.raises(ValueError, match="'pca_clustering'.*choose a non-empty subset"):
        comparison.CompareConfig(defences=("pca_clustering",))
    with pytest.raises(ValueError, match="repeat"):
        comparison.CompareConfig(defences=("strip", "strip"))
    with pytest.raises(ValueError, match="segment_by"):
        comparison.CompareConfig(segment_by="true_label")
    with pytest.raises(ValueError, match="calibration_share"):
        comparison.CompareConfig(calibration_share=1.0)


def _row(defence, **overrides):
    values = dict(
        defence=defence,
        kind="sanitizer",
        precision=0.5,
        recall=float("nan"),
        f1=None,
        auroc=0.9,
        removed_share=0.1,
        asr_before=0.95,
        accuracy_before=0.9,
        asr_after=0.05,
        accuracy_after=0.88,
        wall_seconds=1.5,
        evaluated_on="full test sets",
    )
    values.update(overrides)
    return comparison.ComparisonRow(**values)


def test_row_validation_and_nan_to_null():
    row = _row("bki")
    assert row.recall is None and json.loads(json.dumps(row.to_dict()))["recall"] is None
    with pytest.raises(ValueError, match="Unknown defence"):
        _row("neural_cleanse")
    with pytest.raises(ValueError, match="asr_after"):
        _row("bki", asr_after=1.5)


def _synthetic_comparison():
    rng = np.random.default_rng(0)
    truth = rng.random(50) < 0.2
    scores = truth + rng.normal(scale=0.5, size=50)
    det = detection.DetectionResult("spectral_signatures", scores, scores > 0.8)
    strip_det = detection.DetectionResult(
        "strip", -rng.random(20), np.zeros(20, bool), {"threshold": 0.1}
    )
    curves = {"hidden": {"num_pruned": [0, 1, 2], "asr": [0.9, 0.5, 0.1], "accuracy": [0.9] * 3}}
    prune = pruning.PruningResult(
        norms={"hidden": np.array([1.0, 0.5])},
        orders={"hidden": np.array([0, 1])},
        curves=curves,
        asr_before=0.9,
        accuracy_before=0.9,
        asr_threshold=0.2,
        chosen=pruning.PruningPoint("hidden", 2, 0.1, 0.9),
        reached=True,
    )
    return comparison.Comparison(
        workdir="runs/x",
        config=comparison.CompareConfig(defences=("spectral_signatures", "strip", "bki")),
        rows=(
            _row("bki", details={"keyword": "cf"}),
            _row("spectral_signatures", asr_after=None, accuracy_after=None),
            _row("strip", kind="input_filter", details={"frr": 0.01, "far": 0.2}),
        ),
        notes=("a note",),
        detections={"spectral_signatures": det, "strip": strip_det},
        ground_truth={
            "spectral_signatures": truth,
            "strip": np.r_[np.zeros(10, bool), np.ones(10, bool)],
        },
        bki_entries=(
            {"word": "cf", "g": 2.0, "label": None},
            {"word": "movie", "g": 0.5, "label": None},
        ),
        trigger_tokens=("cf", "mn"),
        pruning_result=prune,
    )


def test_write_comparison_writes_rows_markdown_and_plots(tmp_path):
    c = _synthetic_comparison()
    paths = comparison.write_comparison(c, str(tmp_path))
    with open(paths["comparison.json"]) as f:
        rows = json.load(f)
    assert [r["defence"] for r in rows] == ["bki", "spectral_signatures", "strip"]
    assert rows[1]["asr_after"] is None
    for png in (
        comparison.SCORES_PNG,
        comparison.RANKING_PNG,
        comparison.BEFORE_AFTER_PNG,
        comparison.PRUNING_PNG,
    ):
        with open(os.path.join(tmp_path, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    md = open(paths["comparison.md"]).read()
    assert "| bki | sanitizer | 0.500 | – |" in md and "95.0% → 5.0%" in md
    assert "a note" in md and "**cf**" in md
    assert os.path.isfile(os.path.join(tmp_path, "spectral_signatures", "detection.json"))
    assert json.dumps(c.to_dict())


def test_ranking_plot_marks_trigger_words():
    fig = comparison.plot_bki_ranking(
        [{"word": "time flies", "g": 2.0, "label": 0}, {"word": "movie", "g": 1.0}],
        ("time", "flies"),
    )
    ax = fig.axes[0]
    colors = [tuple(p.get_facecolor()[:3]) for p in ax.patches]
    assert colors[0] != colors[1]
    ticks = ax.get_yticklabels()  # In entry order (best at the top).
    assert [t.get_text() for t in ticks] == ["time flies (label 0)", "movie"]
    assert ticks[0].get_color() == "tab:red" and ticks[1].get_color() != "tab:red"
    assert comparison._is_trigger_word("an arrow", ("arrow",))  # pylint: disable=protected-access
    assert not comparison._is_trigger_word("arrows", ("arrow",))  # pylint: disable=protected-access


def test_strip_split_maps_every_trigger_block_onto_its_source_texts():
    import types

    labels = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1, 1])
    sources = np.flatnonzero(labels != 0)  # Seven non-target texts.
    run = types.SimpleNamespace(
        test_texts=[f"text {i}" for i in range(10)],
        test_labels=labels,
        target=0,
        # Two triggers: one block of the seven sources per trigger, in order.
        triggered_texts=[f"t{b} {i}" for b in range(2) for i in sources],
    )
    config = comparison.CompareConfig(calibration_share=0.5)
    cal, ev, trig, notes = comparison._strip_split(run, config)  # pylint: disable=protected-access
    assert notes == []
    assert not set(cal) & set(ev)
    tiled = np.tile(sources, 2)
    assert len(trig) and all(tiled[i] in set(ev) for i in trig)  # No calibration text leaks.
    expected = [i for i in range(14) if tiled[i] in set(ev)]
    assert list(trig) == expected and {i // 7 for i in trig} == {0, 1}  # Both triggers.


def test_per_trigger_asr_splits_the_triggered_set_into_equal_blocks():
    from bki_tf import models, training
    from bki_tf.runs import sanitize

    model = models.build_classifier(12, 2, embedding_dim=4, lstm_units=3, dense_units=3, seed=0)
    ids = np.random.default_rng(0).integers(2, 12, size=(12, 5)).astype(np.int32)
    assert sanitize.per_trigger_asr(model, ids, 1, "time flies") is None
    values = sanitize.per_trigger_asr(model, ids, 1, "cf|mn|bb")
    assert values == [training.attack_success_rate(model, ids[k : k + 4], 1) for k in (0, 4, 8)]
    assert np.mean(values) == pytest.approx(training.attack_success_rate(model, ids, 1))
    with pytest.raises(ValueError, match="do not split into 5 equal blocks"):
        sanitize.per_trigger_asr(model, ids, 1, "a|b|c|d|e")
