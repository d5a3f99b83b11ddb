r"""Retrains the victim on the purified training set and writes the report.

    python -m experiments.retrain --workdir=runs/imdb_tfla

With --variant=refined it reads filter_refined/ and writes retrain_refined/ and
report_refined.{json,md}. --validation_split=0.1 holds out 10 % of the purified set
and keeps the epoch with the best held-out accuracy (unset: the attack run's
value). --clean_workdir adds the clean model's ASR on the same triggered texts.
"""

from absl import app, flags

from bki_tf.runs import pipeline
from experiments import common_flags as cf

_USED = cf.use("workdir", "overwrite", "variant", "validation_split", "clean_workdir")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    pipeline.run_retrain(
        cf.value("workdir"),
        overwrite=cf.value("overwrite"),
        verbose=cf.keras_verbosity(),
        variant=cf.value("variant"),
        validation_split=cf.value("validation_split"),
    )
    report = pipeline.make_report(
        cf.value("workdir"), variant=cf.value("variant"), clean_workdir=cf.value("clean_workdir")
    )
    print(report.summary())


if __name__ == "__main__":
    cf.run(main, _USED)
