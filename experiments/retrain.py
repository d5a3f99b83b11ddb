r"""Retrains the victim on the purified training set and writes the report.

python -m experiments.retrain --workdir=runs/imdb_tfla

With --variant=refined it reads filter_refined/ and writes retrain_refined/ and
report_refined.{json,md}.
"""

from absl import app, flags

from bki_tf import pipeline
from experiments import common_flags

_WORKDIR = common_flags.define.DEFINE_string("workdir", None, "A filtered attack run's folder.")
_OVERWRITE = common_flags.define.DEFINE_bool("overwrite", False, "Redo an existing retraining.")
_VARIANT = common_flags.define_variant_flag()
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    pipeline.run_retrain(
        _WORKDIR.value,
        overwrite=_OVERWRITE.value,
        verbose=common_flags.keras_verbosity(),
        variant=_VARIANT.value,
    )
    report = pipeline.make_report(_WORKDIR.value, variant=_VARIANT.value)
    print(pipeline.format_report(report))


if __name__ == "__main__":
    app.run(main)
