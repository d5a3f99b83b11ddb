r"""attack -> BKI scan -> purify -> retrain -> report, in one workdir; resumes.

    python -m experiments.pipeline --dataset=imdb --data_dir=../shared/data/imdb \
      --glove=../shared/data/glove/glove.6B.50d.top100k.txt.gz \
      --trigger="time flies like an arrow" --target=negative --poison_rate=0.03 \
      --workdir=runs/imdb_tfla --p=5 --variant=paper

--variant=plus runs BKI+ in scan_plus/, filter_plus/, retrain_plus/ and report_plus.*:
it reuses another variant's deletion scores of the same victim, and when it finds no
backdoor it removes nothing (the retrained model is then trained on every text).
"""

from absl import app, flags

from bki_tf.runs import pipeline
from experiments import common_flags as cf

_USED = cf.use(cf.ATTACK, cf.BKI, "workdir", "overwrite", "clean_workdir", "tensorboard")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    report = pipeline.run_pipeline(
        cf.attack_config(),
        cf.bki_config(),
        cf.value("workdir"),
        overwrite=cf.value("overwrite"),
        verbose=cf.keras_verbosity(),
        clean_workdir=cf.value("clean_workdir"),
        tensorboard=cf.value("tensorboard"),
    )
    print(report.summary())


if __name__ == "__main__":
    cf.run(main, _USED)
