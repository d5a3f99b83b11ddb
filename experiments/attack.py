r"""Poisons a training set, trains the victim, measures clean accuracy and ASR.

    python -m experiments.attack --dataset=imdb --data_dir=../shared/data/imdb \
      --glove=../shared/data/glove/glove.6B.50d.top100k.txt.gz \
      --trigger="time flies like an arrow" --target=negative --poison_rate=0.03 \
      --workdir=runs/imdb_tfla
"""

from absl import app, flags, logging

from bki_tf import attack
from experiments import common_flags

_ATTACK = common_flags.define_attack_flags()
_WORKDIR = common_flags.define_workdir_flags()
flags.mark_flags_as_required(["dataset", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = common_flags.attack_config(_ATTACK)
    result = attack.run_attack(
        config,
        _WORKDIR["workdir"].value,
        overwrite=_WORKDIR["overwrite"].value,
        verbose=common_flags.keras_verbosity(),
    )
    logging.info("%s", result.summary())
    print(result.summary())


if __name__ == "__main__":
    app.run(main)
