r"""The threat matrix: attacks x defences on IMDB and DBpedia; resumes cell by cell.

    python -m experiments.threats --data_root=../shared/data \
      --glove=../shared/data/glove/glove.6B.50d.top100k.txt.gz --workdir=runs/threats \
      --output_dir=results

Every cell (attack, dataset) is one run folder under --workdir with both BKI variants
(scanned, purified, retrained) and the baselines (Activation Clustering and Spectral
Signatures retrained, STRIP, l-inf pruning); `bki_tf.runs.threats` lists the attacks.
--attacks / --defences pick a subset; --imdb_train_size caps IMDB's training texts
per class (the same for every row; the paper's 5,000 by default); --span=3 scores the
BKI+ rows by 3-word deletions. Writes
threat_matrix.{json,md,png} into --output_dir (default --workdir) after every cell; --seeds=0,1,2 runs
every cell once per seed and the tables give mean ± std. Rows of cells not run now
are kept from an existing threat_matrix.json in --output_dir (--nokeep_other_cells:
not), so a matrix fills a few cells at a time. Hours on 2 CPU cores.
"""

import dataclasses
import os

from absl import app, flags

from bki_tf.runs import attack, reproduction, threats
from experiments import common_flags as cf

_USED = cf.use(
    cf.BKI,
    "workdir",
    "glove",
    "glove_dim",
    "seed",
    "seeds",
    "epochs",
    "data_root",
    "datasets",
    "output_dir",
    "defences",
)

_ATTACKS = flags.DEFINE_list("attacks", list(threats.ATTACKS), "Attacks (rows) to run.")
_IMDB_TRAIN_SIZE = flags.DEFINE_integer(
    "imdb_train_size", None, "IMDB training texts per class (default: the paper's 5,000)."
)
_KEEP_OTHER_CELLS = flags.DEFINE_bool(
    "keep_other_cells",
    True,
    "Keep the rows of cells not run now from an existing threat_matrix.json in --output_dir "
    "(fill a matrix a few cells at a time); --nokeep_other_cells: this run's cells only.",
)
flags.mark_flags_as_required(["workdir"])


def _choices(name: str, values: list[str], allowed) -> tuple[str, ...]:
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        raise app.UsageError(
            f"--{name}={','.join(values)}: unknown {unknown or 'none given'}; choose from "
            f"{','.join(allowed)}."
        )
    return tuple(values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    attacks = _choices("attacks", _ATTACKS.value, list(threats.ATTACKS))
    defences = _choices(
        "defences", cf.value("defences") or list(threats.DEFENCES), list(threats.DEFENCES)
    )
    bases = {}
    for dataset in cf.value("datasets"):
        target, rate = reproduction.SETTINGS[dataset]
        overrides = {}
        if dataset == "imdb" and _IMDB_TRAIN_SIZE.value:
            overrides["train_size"] = _IMDB_TRAIN_SIZE.value
        base = attack.AttackConfig.for_dataset(
            dataset,
            data_dir=os.path.join(cf.value("data_root"), dataset),
            glove=cf.value("glove") or "auto",
            glove_dim=cf.value("glove_dim"),
            trigger=reproduction.TRIGGERS[0] if dataset == "imdb" else reproduction.TRIGGERS[3],
            target=str(target),
            poison_rate=rate,
            seed=cf.value("seed"),
            **overrides,
        )
        if cf.value("epochs") is not None:
            base = dataclasses.replace(base, epochs=cf.value("epochs"))
        bases[dataset] = base
    rows = threats.run_threats(
        cf.value("workdir"),
        bases,
        attacks,
        defences,
        # The variant is set per row; read as plus so that --span (BKI+ only) is accepted.
        cf.bki_config(variant="plus"),
        output_dir=cf.value("output_dir"),
        verbose=cf.keras_verbosity(),
        log=print,
        seeds=cf.seeds(),
        keep_other_cells=_KEEP_OTHER_CELLS.value,
    )
    print(threats.format_matrix(rows))


if __name__ == "__main__":
    cf.run(main, _USED)
