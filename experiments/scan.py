r"""BKI scan of an attack run's training set: suspicious words and the keyword.

    python -m experiments.scan --workdir=runs/imdb_tfla --p=5 --variant=paper

Writes scan/scan.json, scan/scan.md (top-20 dictionary) and scan/scores.npz; while it
runs, scan/chunks/ holds finished chunks, so a killed scan resumes where it stopped.
"""

from absl import app, flags

from bki_tf.runs import pipeline
from experiments import common_flags as cf

_USED = cf.use(cf.BKI, "workdir", "overwrite")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    record = pipeline.run_scan(
        cf.value("workdir"), cf.bki_config(), overwrite=cf.value("overwrite")
    )
    print(record.summary())


if __name__ == "__main__":
    cf.run(main, _USED)
