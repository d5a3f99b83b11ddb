"""End-to-end tests of the `experiments.benchmark_scan` binary on tiny settings."""

import json
import os

import pytest
from absl.testing import flagsaver
from conftest import tiny_attack_config

from bki_tf.runs import attack, benchmarking
from experiments import benchmark_scan

TINY_FLAGS = dict(
    num_texts=5,
    max_len=12,
    repeats=1,
    lstm_units=4,
    embedding_dim=8,
    vocab_size=40,
    seed=1,
    authors_texts=3,
    scan_batch_size=64,
    scaling_texts=3,
    peak_matmul_size=256,
)
_KEYS = (
    "texts_per_s", "speedup_vs_authors", "speedup_vs_simple", "floor_fraction", "max_abs_diff",
    "matmul_peak_gflops", "peak_memory_mb", "device", "config",
)  # fmt: skip


def _check_result(result):
    for key in _KEYS:
        assert key in result, key
    assert set(result["texts_per_s"]) == {*benchmarking.METHODS, "generic", "prefix_fast"}
    # Local impacts: half the deletion floor, a positive share of it reached.
    assert result["prefix_floor_gflop"] == pytest.approx(result["floor_gflop"] / 2)
    assert 0 < result["prefix_floor_fraction"] and result["prefix_floor_fraction_cpu_time"] > 0
    assert result["max_abs_diff"]["fast_vs_generic"] <= benchmarking.SCORE_TOLERANCE
    assert result["speedup_vs_generic"] > 0
    assert all(rate > 0 for rate in result["texts_per_s"].values())
    assert result["matmul_peak_gflops"] > 0 and result["floor_fraction"] > 0
    assert result["peak_memory_mb"] > 0
    # Nothing doing the floor's work beats the matmul peak, so the bound holds.
    assert result["authors_gflops"] > 0
    assert 0 < result["speedup_vs_authors_same_texts"] < result["speedup_bound_at_peak"]
    assert max(result["max_abs_diff"].values()) < 1e-4 and result["scores_match"]
    assert result["authors_timed_texts"] == 3 and result["authors_extrapolated"]
    assert {k: result["config"][k] for k in TINY_FLAGS} == TINY_FLAGS
    random_model = result["state_convergence"]["random_model"]
    assert [p["tolerance"] for p in random_model] == list(benchmarking.CONVERGENCE_TOLERANCES)
    shares = [p["work_fraction"] for p in random_model]
    assert all(0 < s <= 1 for s in shares) and shares == sorted(shares, reverse=True)


def test_main_with_real_lengths_and_scaling(tmp_path, tiny_imdb_dir, capsys):
    output = str(tmp_path / "out" / "bench.json")
    with flagsaver.flagsaver(data_dir=tiny_imdb_dir, output=output, scaling=True, **TINY_FLAGS):
        benchmark_scan.main(["benchmark_scan"])
    with open(output, encoding="utf-8") as f:
        result = json.load(f)
    _check_result(result)
    assert tiny_imdb_dir in result["length_source"]
    assert result["length_stats"]["max"] <= 12
    scaling = result["scaling"]
    assert [p["x"] for p in scaling["by_max_len"]] == [100, 200, 400, 800]
    assert [p["x"] for p in scaling["by_num_texts"]] == [1, 2, 5]
    for point in scaling["by_max_len"] + scaling["by_num_texts"]:
        assert point["texts_per_s"]["fast"] > 0 and point["texts_per_s"]["simple"] > 0
    assert os.path.getsize(str(tmp_path / "out" / "bench_scaling.png")) > 0
    assert "texts/s" in capsys.readouterr().out


def test_main_with_synthetic_lengths_and_a_trained_run(tmp_path, tiny_imdb_dir, capsys):
    run_dir = str(tmp_path / "run")
    attack.run_attack(tiny_attack_config(tiny_imdb_dir), run_dir, verbose=0)
    output = str(tmp_path / "bench.json")
    with flagsaver.flagsaver(
        data_dir=None, output=output, scaling=False, convergence_run=run_dir, **TINY_FLAGS
    ):
        benchmark_scan.main(["benchmark_scan"])
    with open(output, encoding="utf-8") as f:
        result = json.load(f)
    _check_result(result)
    assert "synthetic" in result["length_source"] and result["scaling"] is None
    assert not os.path.exists(str(tmp_path / "bench_scaling.png"))
    convergence = result["state_convergence"]
    assert convergence["trained_run"] == run_dir and convergence["trained_mean_length"] > 0
    assert all(0 < p["work_fraction"] <= 1 for p in convergence["trained_model"])
    assert "trained_model steps left by state tolerance" in capsys.readouterr().out


def test_main_without_convergence(tmp_path):
    output = str(tmp_path / "bench.json")
    flag_values = {**TINY_FLAGS, "num_texts": 2, "authors_texts": 1}
    with flagsaver.flagsaver(data_dir=None, output=output, convergence_texts=0, **flag_values):
        benchmark_scan.main(["benchmark_scan"])
    with open(output, encoding="utf-8") as f:
        assert json.load(f)["state_convergence"] is None


def test_config_rejects_missing_data():
    with pytest.raises(FileNotFoundError, match="No train.csv.gz"):
        benchmarking.BenchmarkConfig(data_dir="/nonexistent")
    with pytest.raises(ValueError, match="num_texts must be >= 1"):
        benchmarking.BenchmarkConfig(num_texts=0)
    with pytest.raises(ValueError, match="convergence_texts must be >= 0"):
        benchmarking.BenchmarkConfig(convergence_texts=-1)
    with pytest.raises(FileNotFoundError, match="convergence_run='/nonexistent'"):
        benchmarking.BenchmarkConfig(convergence_run="/nonexistent")
