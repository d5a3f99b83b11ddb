r"""attack -> BKI scan -> filter -> retrain -> report, in one workdir; resumes.

    python -m experiments.pipeline --dataset=imdb --data_dir=../shared/data/imdb \
      --glove=../shared/data/glove/glove.6B.50d.top100k.txt.gz \
      --trigger="time flies like an arrow" --target=negative --poison_rate=0.03 \
      --workdir=runs/imdb_tfla --p=5 --variant=paper
"""

from absl import app, flags

from bki_tf import pipeline
from experiments import common_flags

_ATTACK = common_flags.define_attack_flags()
_SCAN = common_flags.define_scan_flags()
_WORKDIR = common_flags.define_workdir_flags()
flags.mark_flags_as_required(["dataset", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    report = pipeline.run_pipeline(
        common_flags.attack_config(_ATTACK),
        common_flags.scan_config(_SCAN),
        _WORKDIR["workdir"].value,
        overwrite=_WORKDIR["overwrite"].value,
        verbose=common_flags.keras_verbosity(),
    )
    print(pipeline.format_report(report))


if __name__ == "__main__":
    app.run(main)
