r"""BKI scan on Apache Beam: the scan of `experiments.scan`, on many workers.

Needs the beam extra (`pip install -e ".[beam]"`). On this machine, two worker
processes of the DirectRunner, one TensorFlow thread each:

    python -m experiments.beam_scan --workdir=runs/imdb_tfla --variant=paper \
      --tf_threads=1 --runner=DirectRunner --direct_num_workers=2 \
      --direct_running_mode=multi_processing

Every flag this binary does not know is passed to Beam as a pipeline option
(`--runner=FlinkRunner --flink_master=...`, `--runner=DataflowRunner --project=...
--region=... --temp_location=gs://... --setup_file=./setup.py`; see the README).
Writes the files of `experiments.scan` (`scan.json`, `scan.md`, `scores.npz`) into
--output_dir (default: the workdir's scan folder, so `experiments.purify` reads it),
plus `beam.json` (runner, per-group seconds). The workers read the staged inputs and
write finished groups to `chunks/` under --staging_dir (default --output_dir, where they
are the in-process scan's checkpoints): a failed job resumes from them.
"""

from absl import app, flags

from experiments import common_flags as cf

_USED = cf.use(cf.BKI, "workdir", "overwrite", "tensorboard", "output_dir", "tf_threads")

_STAGING_DIR = flags.DEFINE_string(
    "staging_dir",
    None,
    "Where the workers read the staged inputs and write checkpoints (any Beam file "
    "system, e.g. gs://bucket/scan; default --output_dir). Driver and workers must reach it.",
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
    try:
        from bki_tf.runs import beam_scan  # noqa: PLC0415
    except ImportError as e:
        raise app.UsageError(
            f"The Beam scan needs Apache Beam ({e}); install it with pip install -e '.[beam]'."
        ) from None
    args = beam_scan.check_pipeline_args(argv[1:])
    record = beam_scan.run_beam_scan(
        cf.value("workdir"),
        cf.bki_config(),
        args,
        output_dir=cf.value("output_dir"),
        overwrite=cf.value("overwrite"),
        tf_threads=cf.value("tf_threads"),
        tensorboard=cf.value("tensorboard"),
        staging_dir=_STAGING_DIR.value,
    )
    print(record.summary())


if __name__ == "__main__":
    cf.run(main, _USED, flags_parser=cf.parse_known)
