"""End-to-end tests of the BKI steps (scan, filter, retrain, report) and their binaries."""

import dataclasses
import hashlib
import json
import os
import shutil

import keras
import numpy as np
import pytest
from absl.testing import flagsaver
from conftest import TRIGGER, tiny_attack_config

from bki_tf import artifacts, training
from bki_tf.bki import BKIConfig, scoring
from bki_tf.runs import attack, pipeline, reproduction, sanitize
from bki_tf.runs import workdir as wd


def _config(folder, **overrides):
    settings = dict(poison_rate=0.15, max_len=24, epochs=3, learning_rate=1e-2)
    return tiny_attack_config(folder, **{**settings, **overrides})


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_imdb_dir):
    """A complete pipeline run on tiny data, shared read-only by the module."""
    workdir = str(tmp_path_factory.mktemp("pipeline") / "run")
    report = pipeline.run_pipeline(_config(tiny_imdb_dir), BKIConfig(p=3), workdir, verbose=0)
    return workdir, report


@pytest.fixture
def copy(finished, tmp_path):
    dst = str(tmp_path / "copy")
    shutil.copytree(finished[0], dst)
    return dst


def test_pipeline_writes_every_step_and_a_consistent_report(finished):
    workdir, report = finished
    for rel in (
        "metrics.json",
        "scan/scan.json",
        "scan/scan.md",
        "scan/scores.npz",
        "filter/train_purified.csv.gz",
        "filter/removed_ids.json",
        "filter/filter.json",
        "retrain/metrics.json",
        "retrain/model.keras",
        "report.json",
        "report.md",
    ):
        assert os.path.exists(os.path.join(workdir, rel)), rel
    on_disk = artifacts.read_json(os.path.join(workdir, "report.json"))
    for key in (
        "keyword",
        "precision",
        "recall",
        "removed",
        "asr_before",
        "accuracy_before",
        "asr_after",
        "accuracy_after",
    ):
        assert key in on_disk
    run = attack.load_run(workdir)
    scan = artifacts.read_json(os.path.join(workdir, "scan/scan.json"))
    flagged = np.asarray(scan["flagged"], dtype=np.int64)
    poison = run.train.is_poisoned
    # Precision / recall recomputed from the ground truth, independently of keywords.py.
    tp = int(poison[flagged].sum())
    assert on_disk["removed"] == len(flagged)
    if len(flagged):
        assert on_disk["precision"] == pytest.approx(tp / len(flagged))
    assert on_disk["recall"] == pytest.approx(tp / poison.sum())
    assert on_disk["accuracy_before"] == pytest.approx(run.metrics.clean_accuracy)
    # The keyword is a vocabulary word (never OOV/padding) held by every flagged text.
    assert scan["keyword"] in run.vocabulary[2:]
    for i in flagged:
        words = [w for w, _ in scan["result"]["suspicious"][i]]
        assert scan["keyword"] in words
    md = open(os.path.join(workdir, "report.md"), encoding="utf-8").read()
    assert scan["keyword"] in md


def test_scores_file_matches_a_literal_deletion(finished):
    """scores.npz holds f_ij; check a few against deleting the word by hand."""
    workdir, _ = finished
    run = attack.load_run(workdir)
    ids, lengths = run_ids(run)
    stored = np.load(os.path.join(workdir, "scan/scores.npz"))
    offsets = np.concatenate([[0], np.cumsum(stored["lengths"])])
    for i in (0, 5, len(ids) - 1):
        n = int(lengths[i])
        row = ids[i, :n]
        _, h = run.model(row[None, :])
        for j in range(n):
            variant = np.delete(row, j)
            if len(variant):
                _, hv = run.model(variant[None, :])
                hv = hv.numpy()
            else:
                hv = np.zeros_like(h.numpy())
            expected = np.max(np.abs(h.numpy() - hv))
            assert stored["scores"][offsets[i] + j] == pytest.approx(expected, abs=1e-5)


def run_ids(run):
    from bki_tf import tokenization

    return tokenization.encode(run.vectorizer(), run.train.texts)


def test_filter_removes_exactly_the_flagged_rows_and_leaves_inputs_untouched(copy):
    before = _sha(os.path.join(copy, "train.csv.gz"))
    run = attack.load_run(copy)
    scan = artifacts.read_json(os.path.join(copy, "scan/scan.json"))
    shutil.rmtree(os.path.join(copy, "filter"))
    out = pipeline.run_filter(copy)
    assert _sha(os.path.join(copy, "train.csv.gz")) == before
    kept_ids, kept = sanitize.read_purified(os.path.join(copy, "filter"))
    removed = artifacts.read_json(os.path.join(copy, "filter/removed_ids.json"))
    flagged_ids = sorted(int(run.row_ids[i]) for i in scan["flagged"])
    assert removed == flagged_ids
    assert sorted(kept_ids.tolist() + removed) == sorted(run.row_ids.tolist())
    assert out.num_after == len(run.train) - len(flagged_ids)
    by_id = dict(zip(run.row_ids.tolist(), run.train.texts))
    assert all(by_id[i] == t for i, t in zip(kept_ids.tolist(), kept.texts))


def test_filter_rows_accepts_mask_and_indices_and_rejects_bad_ones(finished):
    run = attack.load_run(finished[0])
    n = len(run.train)
    keep_a, res_a = sanitize.filter_rows(run, np.array([0, 2]))
    mask = np.zeros(n, bool)
    mask[[0, 2]] = True
    keep_b, res_b = sanitize.filter_rows(run, mask)
    np.testing.assert_array_equal(keep_a, keep_b)
    assert res_a == res_b and res_a.num_after == n - 2
    with pytest.raises(ValueError, match="out of range"):
        sanitize.filter_rows(run, np.array([n]))
    with pytest.raises(ValueError, match="shape"):
        sanitize.filter_rows(run, np.zeros(n + 1, bool))


def test_interrupted_pipeline_resumes_only_missing_steps(copy, tiny_imdb_dir, monkeypatch):
    os.remove(os.path.join(copy, "retrain/metrics.json"))
    os.remove(os.path.join(copy, "report.json"))

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished step ran again")

    monkeypatch.setattr(scoring.Scorer, "score_unit", must_not_run)
    monkeypatch.setattr(attack, "poison_dataset", must_not_run, raising=False)
    report = pipeline.run_pipeline(_config(tiny_imdb_dir), BKIConfig(p=3), copy, verbose=0)
    assert os.path.exists(os.path.join(copy, "retrain/metrics.json"))
    assert report.keyword == artifacts.read_json(os.path.join(copy, "scan/scan.json"))["keyword"]


def test_scan_is_deterministic(copy, finished):
    first = artifacts.read_json(os.path.join(finished[0], "scan/scan.json"))
    pipeline.run_scan(copy, BKIConfig(p=3), overwrite=True, progress=False)
    again = artifacts.read_json(os.path.join(copy, "scan/scan.json"))
    assert again["keyword"] == first["keyword"]
    assert again["flagged"] == first["flagged"]
    assert again["result"]["entries"] == first["result"]["entries"]


def test_a_swapped_model_is_refused(copy):
    run = attack.load_run(copy)
    other = keras.models.clone_model(run.model)
    other.set_weights([w + 0.01 for w in run.model.get_weights()])
    other.save(os.path.join(copy, wd.MODEL_FILE))
    with pytest.raises(ValueError, match="model.keras.*weights differ"):
        pipeline.run_scan(copy, BKIConfig(p=3), progress=False)


def test_scan_of_another_model_is_refused(copy):
    """A scan.json of another victim (other fingerprints) is not taken as this one's."""
    path = os.path.join(copy, "scan", "scan.json")
    stored = artifacts.read_json(path)
    stored["config"]["weights_sha256"] = "0" * 64
    artifacts.write_json(path, stored)
    with pytest.raises(ValueError, match="another model"):
        pipeline.run_scan(copy, BKIConfig(p=3), progress=False)


def test_scan_with_other_settings_is_refused_unless_overwrite(copy):
    with pytest.raises(ValueError, match="overwrite"):
        pipeline.run_scan(copy, BKIConfig(p=2), progress=False)
    out = pipeline.run_scan(copy, BKIConfig(p=2), overwrite=True, progress=False)
    assert out.config["p"] == 2
    # Rescanning clears the variant's later steps, which belonged to the old scan.
    assert not os.path.exists(os.path.join(copy, "filter"))
    assert not os.path.exists(os.path.join(copy, "report.json"))


def test_pipeline_redoes_a_stale_scan_only_when_asked(copy, tiny_imdb_dir):
    # A BKI+ scan without the confirmation, then the pipeline with it.
    pipeline.run_scan(copy, BKIConfig(p=3, variant="plus", min_flip=0), progress=False)
    plus = BKIConfig(p=3, variant="plus")
    with pytest.raises(pipeline.StaleScanError, match="other settings"):
        pipeline.run_pipeline(_config(tiny_imdb_dir), plus, copy, verbose=0)
    paper_scan = _sha(os.path.join(copy, "scan", "scan.json"))
    report = pipeline.run_pipeline(_config(tiny_imdb_dir), plus, copy, verbose=0, rescan_stale=True)
    record = pipeline.read_scan(copy, "plus")
    assert record.config["min_flip"] == 0.5 and report.variant == "plus"
    assert record.deletion_scores_from is not None  # The paper scan's scores, reused.
    rejected = record.plus["rejected"]
    assert list(report.rejected_phrases) == [pipeline.rejected_entry(k) for k in rejected]
    text = pipeline.format_report(report.to_dict())
    for k in rejected:
        assert (
            f"`{k['phrase']}` (z {k['statistic']:.2f}, {100 * k['flip_share']:.1f} % flips)" in text
        )
    # The other variant's steps are untouched.
    assert _sha(os.path.join(copy, "scan", "scan.json")) == paper_scan


def test_model_without_hidden_output_is_rejected(copy):
    run = attack.load_run(copy)
    training_view = keras.Model(run.model.inputs, run.model.outputs[0])
    training_view.save(os.path.join(copy, wd.MODEL_FILE))
    with pytest.raises(ValueError, match="hidden|outputs"):
        attack.load_run(copy)


def test_empty_training_set_is_rejected(copy):
    run = attack.load_run(copy)
    artifacts.write_training_set(
        os.path.join(copy, "train.csv.gz"), run.train.subset(np.array([], np.int64))
    )
    shutil.rmtree(os.path.join(copy, "scan"))
    with pytest.raises(ValueError, match="empty"):
        pipeline.run_scan(copy, BKIConfig(), progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(p=0), "p must be"),
        (dict(variant="best"), "Unknown BKI variant"),
        (dict(method="magic"), "Unknown scoring method"),
        (dict(max_ngram=0), "max_ngram"),
        (dict(min_ngram=0), "min_ngram"),
        (dict(min_ngram=3, max_ngram=2), "max_ngram must be >= min_ngram"),
        (dict(alpha=1.5), "alpha"),
        (dict(scan_batch_size=1), "scan_batch_size"),
        (dict(p=2.5), "integer"),
    ],
)
def test_scan_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BKIConfig(**kwargs)


def test_refined_variant_runs_beside_the_paper_one_and_reuses_its_scores(
    copy, tiny_imdb_dir, monkeypatch
):
    from bki_tf import tokenization
    from bki_tf.bki import keywords

    paper_report = artifacts.read_json(os.path.join(copy, "report.json"))
    paper_scan = os.path.join(copy, "scan/scan.json")
    before = _sha(paper_scan)

    score_unit = scoring.Scorer.score_unit

    def local_impacts_only(self, *args, **kwargs):
        if self._kind == "deletion":  # pylint: disable=protected-access
            raise AssertionError("deletion scores were recomputed")
        return score_unit(self, *args, **kwargs)

    monkeypatch.setattr(scoring.Scorer, "score_unit", local_impacts_only)
    config = BKIConfig(p=3, variant="refined", alpha=0.5)
    report = pipeline.run_pipeline(_config(tiny_imdb_dir), config, copy, verbose=0)
    for rel in (
        "scan_refined/scan.json",
        "scan_refined/scores.npz",
        "filter_refined/filter.json",
        "retrain_refined/metrics.json",
        "report_refined.json",
        "report_refined.md",
    ):
        assert os.path.exists(os.path.join(copy, rel)), rel
    # The paper variant's files are untouched.
    assert _sha(paper_scan) == before
    assert artifacts.read_json(os.path.join(copy, "report.json")) == paper_report
    scan = artifacts.read_json(os.path.join(copy, "scan_refined/scan.json"))
    assert scan["deletion_scores_from"] == "scan"
    assert report.variant == "refined" and report.keyword == scan["keyword"]
    assert report.keyword_label == scan["keyword_label"] is not None
    # Independent recomputation: stored paper scores + fresh local impacts.
    run = attack.load_run(copy)
    label = scan["keyword_label"]
    name = run.metrics.target_name if label == run.metrics.target else str(label)
    assert report.keyword_label_name == name
    assert (
        f"(label {name})" in open(os.path.join(copy, "report_refined.md"), encoding="utf-8").read()
    )
    ids, lengths = tokenization.encode(run.vectorizer(), run.train.texts)
    stored = np.load(os.path.join(copy, "scan/scores.npz"))
    scores = np.split(stored["scores"], np.cumsum(lengths)[:-1])
    local = scoring.prefix_scores(run.model, ids, lengths)
    expected = keywords.identify_keyword(
        [ids[i, : lengths[i]] for i in range(len(ids))],
        scores,
        run.vocabulary,
        p=3,
        variant="refined",
        labels=run.train.labels,
        local_scores=local,
        alpha=0.5,
    )
    assert scan["keyword"] == expected.keyword
    assert scan["flagged"] == [int(i) for i in expected.flagged]
    removed = artifacts.read_json(os.path.join(copy, "filter_refined/removed_ids.json"))
    assert removed == sorted(int(run.row_ids[i]) for i in expected.flagged)


def test_filter_and_retrain_without_their_inputs_say_which_step_to_run(copy):
    with pytest.raises(FileNotFoundError, match="run the scan step"):
        pipeline.run_filter(copy, variant="refined")
    with pytest.raises(FileNotFoundError, match="run the purify step"):
        pipeline.run_retrain(copy, variant="refined")
    with pytest.raises(ValueError, match="Unknown BKI variant 'best'"):
        pipeline.run_filter(copy, variant="best")


def test_retrain_with_a_validation_split_redoes_the_step_and_records_it(copy, monkeypatch):
    from experiments import retrain as retrain_bin

    path = os.path.join(copy, "retrain", "metrics.json")
    before = artifacts.read_json(path)
    assert "validation_split" not in before["config"]
    assert pipeline.run_retrain(copy, verbose=0).to_dict() == before  # Resumed: nothing to do.
    with flagsaver.flagsaver(workdir=copy, validation_split=0.25):
        retrain_bin.main(["retrain"])
    after = artifacts.read_json(path)
    assert after["config"] == {**before["config"], "validation_split": 0.25}
    epochs = len(after["history"]["val_accuracy"])
    assert epochs == 3 and 1 <= after["history"]["best_epoch"][0] <= epochs
    # Back to the run's own setting (no split): the step is redone without one.
    calls = []
    monkeypatch.setattr(pipeline.sanitize, "retrain", lambda *a, **k: calls.append(k) or _raise())
    with pytest.raises(RuntimeError, match="retrain called"):
        pipeline.run_retrain(copy, verbose=0)
    assert calls[0]["validation_split"] == 0.0
    with pytest.raises(ValueError, match="validation_split must be in"):
        pipeline.run_retrain(copy, verbose=0, validation_split=1.5)


def _raise():
    raise RuntimeError("retrain called")


def test_scan_filter_retrain_binaries(copy):
    from experiments import purify as purify_bin
    from experiments import retrain as retrain_bin
    from experiments import scan as scan_bin

    for sub in ("scan", "filter", "retrain"):
        shutil.rmtree(os.path.join(copy, sub))
    os.remove(os.path.join(copy, "report.json"))
    with flagsaver.flagsaver(workdir=copy, p=3, overwrite=False):
        scan_bin.main(["scan"])
        purify_bin.main(["purify"])
        retrain_bin.main(["retrain"])
    report = json.load(open(os.path.join(copy, "report.json"), encoding="utf-8"))
    assert report["keyword"] == artifacts.read_json(os.path.join(copy, "scan/scan.json"))["keyword"]


def test_reproduction_grid_and_tables(tmp_path, tiny_imdb_dir):
    cells = reproduction.grid(("imdb",), [0], clean=True)
    assert [c.name for c in cells] == ["imdb_clean", "imdb_time_flies_like_an_arrow"]
    with pytest.raises(ValueError, match="Trigger index"):
        reproduction.grid(("imdb",), [6])
    with pytest.raises(ValueError, match="Unknown dataset"):
        reproduction.grid(("mnist",))
    per_dataset = reproduction.grid(("imdb", "dbpedia"), {"imdb": [0, 1], "dbpedia": [3]})
    assert [c.name for c in per_dataset] == [
        "imdb_clean",
        "dbpedia_clean",
        "imdb_time_flies_like_an_arrow",
        "imdb_it_caught_a_lot_of_people_s_attention",
        "dbpedia_no_cross_no_crown",
    ]
    assert len(reproduction.grid(("imdb", "dbpedia"), {"imdb": [0]}, clean=False)) == 7
    with pytest.raises(ValueError, match=r"datasets \['sst2'\]"):
        reproduction.grid(("imdb",), {"sst2": [0]})
    base = _config(tiny_imdb_dir, poison_rate=0.0)
    cfg = reproduction.cell_config(cells[1], base)
    assert cfg.trigger == TRIGGER and cfg.target == "negative" and cfg.poison_rate == 0.03
    assert reproduction.cell_config(cells[0], base).poison_rate == 0.0
    # One tiny cell end to end (rate raised so the tiny set holds poison).
    tiny = dataclasses.replace(base, poison_rate=0.0)
    reports = reproduction.run_grid(
        cells[:1], {"imdb": tiny}, BKIConfig(p=3), str(tmp_path), verbose=0
    )
    assert reports[0]["clean_run"] and reports[0]["asr_before"] is not None
    tables = open(tmp_path / "tables.md", encoding="utf-8").read()
    assert "Table 2" in tables and "Table 3" in tables and "(clean)" in tables
    assert "84.74" in tables  # The paper's clean IMDB accuracy beside ours.
    rows = json.load(open(tmp_path / "tables.json", encoding="utf-8"))["rows"]
    assert rows[0]["cell"] == "imdb_clean"
    reproduction.write_tables(reports, str(tmp_path), variant="refined")
    refined = open(tmp_path / "tables_refined.md", encoding="utf-8").read()
    assert "Table 3: BKI (refined variant)" in refined
    assert (
        json.load(open(tmp_path / "tables_refined.json", encoding="utf-8"))["variant"] == "refined"
    )
    assert "(paper variant)" in open(tmp_path / "tables.md", encoding="utf-8").read()


def test_retrain_rejects_empty_purified_set(finished):
    run = attack.load_run(finished[0])
    with pytest.raises(ValueError, match="empty"):
        sanitize.retrain(run, [], np.zeros(0, np.int64), 0, verbose=0)


def test_predict_matches_training_accuracy_helper(finished):
    run = attack.load_run(finished[0])
    ids, _ = run_ids(run)
    probs, hidden = training.predict(run.model, ids)
    assert hidden.shape == (len(ids), 8)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_report_lists_rejected_candidates_structured_or_as_older_strings(copy, tiny_imdb_dir):
    report = pipeline.run_pipeline(_config(tiny_imdb_dir), BKIConfig(p=3), copy, verbose=0)
    d = report.to_dict()
    d.update(phrases=("cf",), backdoor_found=True)
    entry = {"phrase": "album by", "label": 1, "statistic": 17.4, "flip_share": 0.172}
    assert "`album by` (z 17.40, 17.2 % flips)" in pipeline.format_report(
        {**d, "rejected_phrases": [entry]}
    )
    assert "`album by (17.2 % flips)`" in pipeline.format_report(
        {**d, "rejected_phrases": ["album by (17.2 % flips)"]}
    )
    assert "rejected (deleting them changed too few predictions) | none" in (
        pipeline.format_report({**d, "rejected_phrases": []})
    )
