r"""BKI scan of an attack run's training set: suspicious words and the keyword.

    python -m experiments.scan --workdir=runs/imdb_tfla --p=5 --variant=paper

Writes scan/scan.json, scan/scan.md (top-20 dictionary) and scan/scores.npz.
"""

from absl import app, flags

from bki_tf import pipeline
from experiments import common_flags

_SCAN = common_flags.define_scan_flags()
_WORKDIR = common_flags.define.DEFINE_string("workdir", None, "An attack run's folder.")
_OVERWRITE = common_flags.define.DEFINE_bool("overwrite", False, "Replace an existing scan.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    out = pipeline.run_scan(
        _WORKDIR.value, common_flags.scan_config(_SCAN), overwrite=_OVERWRITE.value
    )
    det = out["detection"]
    print(
        f"keyword {out['keyword']!r}: {out['num_flagged']} texts flagged, precision "
        f"{det['precision']:.2%}, recall {det['recall']}, {out['texts_per_second']:.1f} texts/s"
    )


if __name__ == "__main__":
    app.run(main)
