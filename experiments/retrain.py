r"""Retrains the victim on the purified training set and writes the report.

python -m experiments.retrain --workdir=runs/imdb_tfla
"""

from absl import app, flags

from bki_tf import pipeline
from experiments import common_flags

_WORKDIR = common_flags.define.DEFINE_string("workdir", None, "A filtered attack run's folder.")
_OVERWRITE = common_flags.define.DEFINE_bool("overwrite", False, "Redo an existing retraining.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    pipeline.run_retrain(
        _WORKDIR.value, overwrite=_OVERWRITE.value, verbose=common_flags.keras_verbosity()
    )
    report = pipeline.make_report(_WORKDIR.value)
    print(pipeline.format_report(report))


if __name__ == "__main__":
    app.run(main)
