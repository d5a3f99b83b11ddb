r"""Removes the texts a BKI scan flagged: writes filter/train_purified.csv.gz.

python -m experiments.filter --workdir=runs/imdb_tfla

With --variant=refined it reads scan_refined/ and writes filter_refined/.
"""

from absl import app, flags

from bki_tf import pipeline
from experiments import common_flags

_WORKDIR = common_flags.define.DEFINE_string("workdir", None, "A scanned attack run's folder.")
_OVERWRITE = common_flags.define.DEFINE_bool("overwrite", False, "Redo an existing filter step.")
_VARIANT = common_flags.define_variant_flag()
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    out = pipeline.run_filter(_WORKDIR.value, overwrite=_OVERWRITE.value, variant=_VARIANT.value)
    print(
        f"removed {out['num_before'] - out['num_after']} of {out['num_before']} texts "
        f"({out['num_poison_removed']} poisoned); {out['num_poison_left']} poisoned left"
    )


if __name__ == "__main__":
    app.run(main)
