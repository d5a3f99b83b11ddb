r"""Retrains the victim on the purified training set and writes the report.

python -m experiments.retrain --workdir=runs/imdb_tfla

With --variant=refined it reads filter_refined/ and writes retrain_refined/ and
report_refined.{json,md}. --retrain_validation_split=0.1 holds out 10 % of the
purified set and keeps the epoch with the best held-out accuracy (default: the
attack run's --validation_split).
"""

from absl import app, flags

from bki_tf import pipeline
from experiments import common_flags

_WORKDIR = common_flags.define.DEFINE_string("workdir", None, "A filtered attack run's folder.")
_OVERWRITE = common_flags.define.DEFINE_bool("overwrite", False, "Redo an existing retraining.")
_VARIANT = common_flags.define_variant_flag()
_VALIDATION_SPLIT = common_flags.define.DEFINE_float(
    "retrain_validation_split",
    None,
    "Share of the purified set held out to pick the best epoch (unset: the attack run's "
    "validation_split; 0: keep the last epoch).",
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    pipeline.run_retrain(
        _WORKDIR.value,
        overwrite=_OVERWRITE.value,
        verbose=common_flags.keras_verbosity(),
        variant=_VARIANT.value,
        validation_split=_VALIDATION_SPLIT.value,
    )
    report = pipeline.make_report(_WORKDIR.value, variant=_VARIANT.value)
    print(pipeline.format_report(report))


if __name__ == "__main__":
    app.run(main)
