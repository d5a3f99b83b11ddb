"""The Beam scan gives the in-process scan's dictionary, keyword, flags and scores bit for bit."""

import json
import os
import shutil

import numpy as np
import pytest

beam = pytest.importorskip("apache_beam", reason="needs the beam extra: pip install -e '.[beam]'")

from conftest import tiny_attack_config  # noqa: E402

from bki_tf import bki  # noqa: E402
from bki_tf.bki import keywords  # noqa: E402
from bki_tf.runs import attack, beam_scan, pipeline  # noqa: E402

_IN_PROCESS = ["--runner=DirectRunner", "--direct_num_workers=1"]
_TWO_PROCESSES = [
    "--runner=DirectRunner",
    "--direct_num_workers=2",
    "--direct_running_mode=multi_processing",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_imdb_dir):
    workdir = str(tmp_path_factory.mktemp("beam") / "run")
    config = tiny_attack_config(
        tiny_imdb_dir, poison_rate=0.15, max_len=24, epochs=3, learning_rate=1e-2
    )
    attack.run_attack(config, workdir, verbose=0)
    return workdir


def _copy(tiny_run, tmp_path, name):
    workdir = str(tmp_path / name)
    shutil.copytree(tiny_run, workdir)
    return workdir


def _same_scan(folder_a, folder_b, record_a, record_b):
    assert record_a.keyword == record_b.keyword
    assert record_a.keyword_label == record_b.keyword_label
    assert record_a.flagged == record_b.flagged
    assert record_a.result == record_b.result  # Every dictionary entry and per-text word.
    assert record_a.config == record_b.config
    assert record_a.detection == record_b.detection
    assert record_a.plus == record_b.plus
    a = np.load(os.path.join(folder_a, "scores.npz"))
    b = np.load(os.path.join(folder_b, "scores.npz"))
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        assert np.array_equal(a[key], b[key]), key


@pytest.mark.parametrize(
    "variant,options,span",
    [("paper", _TWO_PROCESSES, 1), ("refined", _IN_PROCESS, 1), ("plus", _IN_PROCESS, 2)],
)
def test_beam_scan_equals_the_in_process_scan(
    tiny_run, tmp_path, monkeypatch, variant, options, span
):
    # Small checkpoint groups: many Beam elements, partial dictionaries merged. BKI+
    # runs with span deletions (the generic scorer's units).
    monkeypatch.setattr(pipeline, "CHECKPOINT_TEXTS", 4)
    config = bki.BKIConfig(p=3, variant=variant, alpha=0.5, scan_batch_size=16, span=span)
    local = _copy(tiny_run, tmp_path, "local")
    expected = pipeline.run_scan(local, config, progress=False)
    distributed = _copy(tiny_run, tmp_path, "beam")
    got = beam_scan.run_beam_scan(distributed, config, options)
    folder = {"paper": "scan", "refined": "scan_refined", "plus": "scan_plus"}[variant]
    _same_scan(os.path.join(local, folder), os.path.join(distributed, folder), expected, got)
    info = beam_scan.BeamScanInfo.from_dict(
        json.load(open(os.path.join(distributed, folder, beam_scan.INFO_FILE)))
    )
    kinds = ["deletion"] + (["prefix"] if variant == "refined" else [])
    assert sorted(info.groups) == sorted(kinds)
    assert all(info.groups[k] >= 2 for k in kinds)
    assert all(len(info.group_seconds[k]) == info.groups[k] for k in kinds)
    assert sum(info.group_texts["deletion"]) == expected.num_texts
    # The Beam scan's folder is a normal scan folder: purify reads it.
    filtered = pipeline.run_filter(distributed, variant=variant)
    assert filtered.num_before - filtered.num_after == len(expected.flagged)
    for leftover in (beam_scan.INPUTS_DIR, beam_scan.OUTPUTS_DIR, "chunks"):
        assert not os.path.exists(os.path.join(distributed, folder, leftover))


def test_beam_scan_resumes_from_in_process_checkpoints(tiny_run, tmp_path, monkeypatch):
    """A scan killed in-process is finished by Beam from its checkpoints, same result."""
    monkeypatch.setattr(pipeline, "CHECKPOINT_TEXTS", 4)
    config = bki.BKIConfig(p=3, scan_batch_size=16)
    full = _copy(tiny_run, tmp_path, "full")
    expected = pipeline.run_scan(full, config, progress=False)
    killed = _copy(tiny_run, tmp_path, "killed")
    real = bki.Scorer.score_unit
    calls = []

    def dies_after_one_unit(self, *args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(bki.Scorer, "score_unit", dies_after_one_unit)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_scan(killed, config, progress=False)
    monkeypatch.setattr(bki.Scorer, "score_unit", real)
    assert os.listdir(os.path.join(killed, "scan", "chunks"))
    got = beam_scan.run_beam_scan(killed, config, _IN_PROCESS)
    assert got.resumed_units == 1
    _same_scan(os.path.join(full, "scan"), os.path.join(killed, "scan"), expected, got)


def test_beam_scan_into_another_folder_and_finished_scans_are_kept(tiny_run, tmp_path):
    workdir = _copy(tiny_run, tmp_path, "run")
    out = str(tmp_path / "out")
    config = bki.BKIConfig(p=3)
    first = beam_scan.run_beam_scan(workdir, config, _IN_PROCESS, output_dir=out)
    assert os.path.isfile(os.path.join(out, "scan.json"))
    assert not os.path.exists(os.path.join(workdir, "scan"))
    again = beam_scan.run_beam_scan(workdir, config, _IN_PROCESS, output_dir=out)
    assert again == first  # Read back, not rescanned.
    with pytest.raises(ValueError, match="--overwrite"):
        beam_scan.run_beam_scan(workdir, bki.BKIConfig(p=2), _IN_PROCESS, output_dir=out)


def test_the_exact_accumulator_is_order_and_grouping_free():
    rng = np.random.default_rng(0)
    values = (rng.random(2000) * 10.0 ** rng.integers(-30, 3, 2000)).tolist()
    combine = beam_scan._ExactSum()
    one = combine.create_accumulator()
    for v in values:
        one = combine.add_input(one, v)
    parts = []
    for chunk in np.array_split(np.asarray(values)[rng.permutation(len(values))], 7):
        acc = combine.create_accumulator()
        for v in chunk.tolist():
            acc = combine.add_input(acc, v)
        parts.append(acc)
    merged = combine.merge_accumulators(parts[::-1])
    assert merged == one
    stats = keywords.accumulate({}, [("k", v) for v in values])
    assert stats["k"] == one
    # The mean is the correctly rounded exact mean (fsum / n is within one rounding).
    import math

    assert keywords.exact_mean(*one) == pytest.approx(math.fsum(values) / len(values), rel=1e-15)
    assert keywords.fixed_point(0.1) / 2**1074 == 0.1


def test_unknown_options_are_named():
    args = ["--runner=DirectRunner", "--direct_num_workers=2"]
    assert beam_scan.check_pipeline_args(args) == args
    with pytest.raises(ValueError, match="--direct_num_workerz=2"):
        beam_scan.check_pipeline_args(["--direct_num_workerz=2"])
    with pytest.raises(ValueError, match="'stray'"):
        beam_scan.check_pipeline_args(["stray"])


def test_projection_schedules_groups_longest_first():
    from bki_tf.runs import beam_benchmark

    # LPT: 5 -> A, 4 -> B, 3 -> B (7), 3 -> A (8), 3 -> B (10); the optimum would be 9.
    assert beam_benchmark.makespan([5, 4, 3, 3, 3], 2) == 10
    assert beam_benchmark.makespan([5, 4, 3, 3, 3], 1) == 18
    assert beam_benchmark.makespan([5, 1, 1], 8) == 5
    p = beam_benchmark.project([2.0, 2.0, 2.0, 2.0], 1.0, 100, [1, 2, 4])
    assert [p[k]["wall_seconds"] for k in ("1", "2", "4")] == [9.0, 5.0, 3.0]


def test_benchmark_binary_end_to_end(tiny_run, tmp_path):
    """Runs experiments.scan and experiments.beam_scan as processes; scores must agree."""
    import subprocess
    import sys

    output = str(tmp_path / "bench.json")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.benchmark_beam",
            f"--workdir={tiny_run}",
            "--workers=1",
            "--project_workers=1,4",
            f"--scratch_dir={tmp_path / 'scratch'}",
            f"--output={output}",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.load(open(output))
    assert result["identical"] == {"beam-1": True}
    assert set(result["runs"]) == {"in-process", "beam-1"}
    assert result["num_texts"] == sum(result["group_texts"])
    assert set(result["projection"]) == {"1", "4"}
    assert os.path.isfile(str(tmp_path / "bench_scaling.png"))
    assert "Beam overhead" in open(str(tmp_path / "bench.md")).read()
    assert not os.path.exists(str(tmp_path / "scratch" / "beam_1"))  # Removed after the run.


def test_a_separate_staging_folder_is_cleaned_and_gives_the_same_scan(tiny_run, tmp_path):
    config = bki.BKIConfig(p=3)
    a = beam_scan.run_beam_scan(_copy(tiny_run, tmp_path, "a"), config, _IN_PROCESS)
    staging = str(tmp_path / "staging")
    b = beam_scan.run_beam_scan(
        _copy(tiny_run, tmp_path, "b"), config, _IN_PROCESS, staging_dir=staging
    )
    assert (a.keyword, a.flagged, a.result) == (b.keyword, b.flagged, b.result)
    assert os.listdir(staging) == []  # Inputs, outputs and checkpoints removed.
