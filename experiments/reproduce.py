r"""The BKI paper's grid: six triggers x {IMDB, DBpedia} + clean runs; resumes.

    python -m experiments.reproduce --data_root=../shared/data \
      --glove=../shared/data/glove/glove.6B.50d.top100k.txt.gz --workdir=runs/reproduce

--imdb_trigger_indices=0,1,2 --dbpedia_trigger_indices=3,4,5 runs a subset;
--seeds=0,1,2 runs every cell with each seed and adds mean ± std of each metric;
--variant=plus runs BKI+ (tables_plus.*).

Writes one pipeline workdir per cell and tables.md / tables.json (Tables 2
and 3 in the paper's columns, beside its figures; tables_refined.* with
--variant=refined, which reuses the paper variant's deletion scores of each
cell). Hours on 2 CPU cores.
"""

import dataclasses
import os

from absl import app, flags

from bki_tf.runs import attack, reproduction
from experiments import common_flags as cf

_USED = cf.use(
    cf.BKI, "workdir", "glove", "glove_dim", "seed", "seeds", "epochs", "data_root", "datasets"
)
_TRIGGERS = flags.DEFINE_list(
    "trigger_indices", None, "Indices (0-5) of the paper's triggers to run; default all."
)
_PER_DATASET = {
    dataset: flags.DEFINE_list(
        f"{dataset}_trigger_indices", None, f"Trigger indices for {dataset} (overrides the above)."
    )
    for dataset in reproduction.SETTINGS
}
_CLEAN = flags.DEFINE_bool("clean", True, "Also run the clean (unpoisoned) models.")
flags.mark_flags_as_required(["workdir"])


def _ints(values: list[str] | None) -> list[int] | None:
    try:
        return None if values is None else [int(i) for i in values]
    except ValueError as e:
        raise app.UsageError(f"Trigger indices must be integers 0-5, got {values}.") from e


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    indices = {
        d: _ints(_PER_DATASET[d].value) or _ints(_TRIGGERS.value) for d in cf.value("datasets")
    }
    cells = reproduction.grid(tuple(cf.value("datasets")), indices, clean=_CLEAN.value)
    bases = {}
    for dataset in cf.value("datasets"):
        base = attack.AttackConfig.for_dataset(
            dataset,
            data_dir=os.path.join(cf.value("data_root"), dataset),
            glove=cf.value("glove") or "auto",
            glove_dim=cf.value("glove_dim"),
            trigger=reproduction.TRIGGERS[0],
            target="0",
            poison_rate=0.0,
            seed=cf.value("seed"),
        )
        if cf.value("epochs") is not None:
            base = dataclasses.replace(base, epochs=cf.value("epochs"))
        bases[dataset] = base
    reports = reproduction.run_grid(
        cells,
        bases,
        cf.bki_config(),
        cf.value("workdir"),
        verbose=cf.keras_verbosity(),
        seeds=cf.seeds(),
    )
    name = reproduction.tables_name(cf.value("variant")) + ".md"
    print(open(os.path.join(cf.value("workdir"), name), encoding="utf-8").read())
    print(f"{len(reports)} runs done.")


if __name__ == "__main__":
    cf.run(main, _USED)
