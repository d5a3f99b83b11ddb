"""Scaling of the Beam scan: in-process vs the DirectRunner with 1, 2, ... workers.

Every configuration scans the same run folder's training set in a fresh process with
the same TensorFlow thread count per worker (`TF_NUM_INTRAOP_THREADS` /
`TF_NUM_INTEROP_THREADS`, and `--tf_threads` for the Beam workers), into its own
output folder, so no configuration reuses another's checkpoints:

* `in-process`: `python -m experiments.scan` on a copy of the run's inputs;
* `beam-<n>`: `python -m experiments.beam_scan` with `--direct_num_workers=<n>
  --direct_running_mode=multi_processing`.

Reported: wall seconds and texts/s of each, Beam's overhead against the in-process
scan (`beam-1` wall / in-process wall - 1), the speed-up of `n` workers over one, and
a projection for more workers from the measured per-group scoring seconds
(`beam.json`): longest-processing-time scheduling of the groups over `N` workers plus
the measured fixed cost of the one-worker run (its wall time minus its scoring time).
Every Beam scan's scores are checked bit for bit against the in-process scan's.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bki_tf import artifacts
from bki_tf.runs import workdir as wd

# The run folder's inputs a scan reads (everything else is derived).
_INPUTS = (
    wd.CONFIG_FILE,
    wd.DATASET_FILE,
    wd.METRICS_FILE,
    wd.MODEL_FILE,
    wd.VOCAB_FILE,
    wd.TRAIN_FILE,
    wd.TEST_FILE,
    wd.TRIGGERED_FILE,
)


@dataclasses.dataclass(frozen=True)
class BeamBenchmarkConfig:
    """What to measure.

    Attributes:
      workdir: A finished attack run (its victim and training set are scanned).
      variant: BKI variant (`"paper"` or `"refined"`).
      workers: DirectRunner worker counts to time.
      tf_threads: TensorFlow threads per worker (and for the in-process scan).
      project_workers: Worker counts of the projection.
      scratch_dir: Where the copies and outputs go (removed after each run unless
        `keep`).
      keep: Keep the scratch folders.
    """

    workdir: str
    variant: str = "paper"
    workers: tuple[int, ...] = (1, 2)
    tf_threads: int = 1
    project_workers: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    scratch_dir: str = "runs/beam_benchmark_scratch"
    keep: bool = False

    def __post_init__(self):
        if self.variant not in wd.VARIANTS:
            raise ValueError(f"Unknown variant {self.variant!r}; use one of {wd.VARIANTS}.")
        if not self.workers or min(self.workers) < 1:
            raise ValueError(f"workers must be counts >= 1, got {self.workers}.")
        if self.tf_threads < 1:
            raise ValueError(f"tf_threads must be >= 1, got {self.tf_threads}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BeamBenchmarkResult:
    """Measured figures (`to_dict()` is the result JSON).

    Attributes:
      config: The benchmark's config.
      num_texts: Training texts scanned.
      runs: Per configuration (`"in-process"`, `"beam-1"`, ...): wall seconds,
        texts/s and (Beam) the pipeline seconds and summed group seconds.
      overhead: `beam-1` wall / in-process wall - 1.
      speedup: Per worker count n, `beam-1` wall / `beam-n` wall.
      identical: Per Beam run, whether every score equals the in-process scan's.
      group_seconds: Per-group scoring seconds of the one-worker run (plan order).
      group_texts: Texts per group.
      projection: Worker count -> projected wall seconds and texts/s.
      device: The machine.
    """

    config: dict
    num_texts: int
    runs: dict
    overhead: float | None
    speedup: dict
    identical: dict
    group_seconds: list
    group_texts: list
    projection: dict
    device: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        lines = [
            f"Beam scan scaling, {self.num_texts} texts, variant {self.config['variant']}, "
            f"{self.config['tf_threads']} TF thread(s) per worker ({self.device}).",
            "",
            "| run | wall s | texts/s | scores identical |",
            "|---|---:|---:|---|",
        ]
        for name, r in self.runs.items():
            same = "" if name == "in-process" else str(self.identical.get(name))
            lines.append(
                f"| {name} | {r['wall_seconds']:.1f} | {r['texts_per_second']:.2f} | {same} |"
            )
        if self.overhead is not None:
            lines.append("")
            lines.append(f"Beam overhead (1 worker vs in-process): {100 * self.overhead:+.1f} %.")
        for n, s in self.speedup.items():
            lines.append(f"Speed-up of {n} workers over 1: {s:.2f}x.")
        lines += ["", "| workers (projected) | wall s | texts/s |", "|---:|---:|---:|"]
        for n, p in self.projection.items():
            lines.append(f"| {n} | {p['wall_seconds']:.1f} | {p['texts_per_second']:.1f} |")
        return "\n".join(lines)


def makespan(costs: Sequence[float], workers: int) -> float:
    """Finish time of `costs` on `workers` by longest-processing-time-first scheduling."""
    loads = [0.0] * max(1, int(workers))
    heapq.heapify(loads)
    for cost in sorted(costs, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + cost)
    return max(loads)


def project(
    group_seconds: Sequence[float], fixed_seconds: float, num_texts: int, workers: Sequence[int]
) -> dict:
    """Projected wall seconds and texts/s for each worker count."""
    out = {}
    for n in workers:
        wall = fixed_seconds + makespan(group_seconds, n)
        out[str(n)] = {"wall_seconds": wall, "texts_per_second": num_texts / max(wall, 1e-9)}
    return out


def _copy_inputs(workdir: str, dest: str) -> None:
    os.makedirs(dest)
    for name in _INPUTS:
        path = os.path.join(workdir, name)
        if os.path.exists(path):
            shutil.copy2(path, os.path.join(dest, name))


def _run(command: list[str], env: dict, log: Callable[[str], None]) -> float:
    log(" ".join(command))
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{command[2]} failed ({done.returncode}): {tail[0]}")
    return wall


def run_beam_benchmark(
    config: BeamBenchmarkConfig, log: Callable[[str], None] = lambda line: None
) -> BeamBenchmarkResult:
    """Times the in-process scan and the Beam scan with each worker count."""
    scan_folder = wd.layout(config.variant).scan
    env = dict(os.environ)
    env.update(
        TF_NUM_INTRAOP_THREADS=str(config.tf_threads),
        TF_NUM_INTEROP_THREADS=str(config.tf_threads),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    common = [f"--variant={config.variant}", "--notensorboard"]
    runs, identical = {}, {}
    os.makedirs(config.scratch_dir, exist_ok=True)

    local = os.path.join(config.scratch_dir, "in_process")
    shutil.rmtree(local, ignore_errors=True)
    _copy_inputs(config.workdir, local)
    wall = _run([sys.executable, "-m", "experiments.scan", f"--workdir={local}", *common], env, log)
    record = artifacts.read_json(os.path.join(local, scan_folder, wd.SCAN_FILE))
    num_texts = int(record["num_texts"])
    runs["in-process"] = {
        "wall_seconds": wall,
        "scan_seconds": record["scan_seconds"],
        "texts_per_second": num_texts / wall,
    }
    with np.load(os.path.join(local, scan_folder, wd.SCORES_FILE)) as stored:
        reference = {k: stored[k] for k in stored.files}
    reference_result = record["result"]

    infos = {}
    for n in config.workers:
        name = f"beam-{n}"
        folder = os.path.join(config.scratch_dir, name.replace("-", "_"))
        shutil.rmtree(folder, ignore_errors=True)
        _copy_inputs(config.workdir, folder)
        out = os.path.join(folder, "out")
        wall = _run(
            [
                sys.executable,
                "-m",
                "experiments.beam_scan",
                f"--workdir={folder}",
                f"--output_dir={out}",
                f"--tf_threads={config.tf_threads}",
                *common,
                "--runner=DirectRunner",
                f"--direct_num_workers={n}",
                "--direct_running_mode=multi_processing",
            ],
            env,
            log,
        )
        info = artifacts.read_json(os.path.join(out, "beam.json"))
        beam_record = artifacts.read_json(os.path.join(out, wd.SCAN_FILE))
        with np.load(os.path.join(out, wd.SCORES_FILE)) as stored:
            same = sorted(stored.files) == sorted(reference) and all(
                np.array_equal(stored[k], reference[k]) for k in stored.files
            )
        identical[name] = bool(same and beam_record["result"] == reference_result)
        seconds = [x for kind in info["group_seconds"].values() for x in kind]
        runs[name] = {
            "wall_seconds": wall,
            "pipeline_seconds": info["pipeline_seconds"],
            "group_seconds_sum": float(sum(seconds)),
            "texts_per_second": num_texts / wall,
        }
        infos[n] = info
        if not config.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if not config.keep:
        shutil.rmtree(local, ignore_errors=True)

    overhead = None
    if 1 in infos:
        overhead = runs["beam-1"]["wall_seconds"] / runs["in-process"]["wall_seconds"] - 1.0
    speedup = {}
    if 1 in infos:
        for n in config.workers:
            if n != 1:
                speedup[str(n)] = runs["beam-1"]["wall_seconds"] / runs[f"beam-{n}"]["wall_seconds"]
    base = infos[min(infos)]
    group_seconds = [x for kind in base["group_seconds"].values() for x in kind]
    group_texts = [x for kind in base["group_texts"].values() for x in kind]
    one = runs[f"beam-{min(infos)}"]
    fixed = max(0.0, one["wall_seconds"] - makespan(group_seconds, min(infos)))
    from bki_tf.runs.benchmarking import _device_name  # pylint: disable=import-outside-toplevel

    return BeamBenchmarkResult(
        config=config.to_dict(),
        num_texts=num_texts,
        runs=runs,
        overhead=overhead,
        speedup=speedup,
        identical=identical,
        group_seconds=group_seconds,
        group_texts=group_texts,
        projection=project(group_seconds, fixed, num_texts, config.project_workers),
        device=_device_name(),
    )


def plot_projection(result: BeamBenchmarkResult, path: str) -> None:
    """PNG: measured and projected texts/s against the number of workers."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    workers = [int(n) for n in result.projection]
    rates = [result.projection[str(n)]["texts_per_second"] for n in workers]
    left.plot(workers, rates, "o-", label="projected (LPT over measured groups)")
    measured = [
        (int(name.split("-")[1]), r["texts_per_second"])
        for name, r in result.runs.items()
        if name.startswith("beam-")
    ]
    left.plot(*zip(*measured), "s", markersize=9, label="measured (DirectRunner)")
    left.axhline(
        result.runs["in-process"]["texts_per_second"], color="grey", ls="--", label="in-process"
    )
    left.set_xscale("log", base=2)
    left.set_xlabel("workers")
    left.set_ylabel("texts/s")
    left.set_title(f"Beam scan, {result.num_texts} texts")
    left.legend(fontsize=8)
    right.hist(result.group_seconds, bins=30)
    right.set_xlabel("seconds per checkpoint group (1 worker)")
    right.set_ylabel("groups")
    right.set_title("Work per group")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result: BeamBenchmarkResult, output: str) -> None:
    """`output` (JSON), `<stem>.md` and `<stem>_scaling.png`."""
    stem = os.path.splitext(output)[0]
    artifacts.write_json(output, result.to_dict())
    artifacts.write_text(stem + ".md", result.summary() + "\n")
    plot_projection(result, stem + "_scaling.png")
