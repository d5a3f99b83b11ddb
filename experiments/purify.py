r"""Removes the texts a BKI scan flagged: writes filter/train_purified.csv.gz.

    python -m experiments.purify --workdir=runs/imdb_tfla

With --variant=refined it reads scan_refined/ and writes filter_refined/. The input
training set is never modified.
"""

from absl import app, flags

from bki_tf.runs import pipeline
from experiments import common_flags as cf

_USED = cf.use("workdir", "overwrite", "variant")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    result = pipeline.run_filter(
        cf.value("workdir"), overwrite=cf.value("overwrite"), variant=cf.value("variant")
    )
    print(result.summary())


if __name__ == "__main__":
    cf.run(main, _USED)
