r"""Poisons a training set, trains the victim, measures clean accuracy and ASR.

    python -m experiments.attack --dataset=imdb --data_dir=../shared/data/imdb \
      --glove=../shared/data/glove/glove.6B.50d.top100k.txt.gz \
      --trigger="time flies like an arrow" --target=negative --poison_rate=0.03 \
      --workdir=runs/imdb_tfla

Any dataset and victim (README, "Data"): a local file or folder, tfds:NAME, huggingface:NAME;
--architecture=bilstm|lstm|gru|bigru|stacked_bilstm|bilstm_gap:

    python -m experiments.attack --dataset=tfds:ag_news_subset --glove=none \
      --trigger="no cross, no crown" --target=Sports --poison_rate=0.02 --architecture=gru \
      --workdir=runs/ag_news_gru
"""

from absl import app, flags, logging

from bki_tf.runs import attack
from experiments import common_flags as cf

_USED = cf.use(cf.ATTACK, "workdir", "overwrite")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    result = attack.run_attack(
        cf.attack_config(),
        cf.value("workdir"),
        overwrite=cf.value("overwrite"),
        verbose=cf.keras_verbosity(),
    )
    logging.info("%s", result.summary())
    print(result.summary())


if __name__ == "__main__":
    cf.run(main, _USED)
