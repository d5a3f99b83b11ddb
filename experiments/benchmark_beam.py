r"""Scaling of the Beam scan on this machine: in-process vs DirectRunner workers.

Needs the beam extra. Every configuration runs in a fresh process with one
TensorFlow thread per worker (--tf_threads), on a copy of the run's inputs:

    python -m experiments.benchmark_beam --workdir=runs/dbpedia_ncnc --workers=1,2 \
      --output=results/benchmark_beam_dbpedia.json

Writes the JSON, a Markdown table (`<stem>.md`) and a plot of measured and projected
texts/s against the number of workers (`<stem>_scaling.png`); the projection
schedules the measured per-group seconds over N workers.
"""

from absl import app, flags, logging

from experiments import common_flags as cf

_USED = cf.use("workdir", "variant", "output", "tf_threads")

_WORKERS = flags.DEFINE_list("workers", ["1", "2"], "DirectRunner worker counts to time.")
_PROJECT = flags.DEFINE_list(
    "project_workers", ["1", "2", "4", "8", "16", "32", "64"], "Worker counts to project."
)
_SCRATCH = flags.DEFINE_string(
    "scratch_dir", "runs/beam_benchmark_scratch", "Folder of the per-run copies."
)
_KEEP = flags.DEFINE_bool("keep", False, "Keep the per-run copies.")
flags.mark_flags_as_required(["workdir", "output"])


def _counts(name: str, values: list[str]) -> tuple[int, ...]:
    try:
        counts = tuple(int(v) for v in values)
    except ValueError:
        raise app.UsageError(f"--{name}={','.join(values)}: give integers, e.g. 1,2.") from None
    if not counts or min(counts) < 1:
        raise app.UsageError(f"--{name}={','.join(values)}: counts must be >= 1.")
    return counts


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        from bki_tf.runs import beam_benchmark  # noqa: PLC0415
    except ImportError as e:
        raise app.UsageError(
            f"The Beam benchmark needs Apache Beam ({e}); pip install -e '.[beam]'."
        ) from None
    config = beam_benchmark.BeamBenchmarkConfig(
        workdir=cf.value("workdir"),
        variant=cf.value("variant"),
        workers=_counts("workers", _WORKERS.value),
        tf_threads=cf.value("tf_threads") or 1,  # One thread per worker unless told.
        project_workers=_counts("project_workers", _PROJECT.value),
        scratch_dir=_SCRATCH.value,
        keep=_KEEP.value,
    )
    result = beam_benchmark.run_beam_benchmark(config, log=lambda s: logging.info("%s", s))
    beam_benchmark.write(result, cf.value("output"))
    print(result.summary())


if __name__ == "__main__":
    cf.run(main, _USED)
