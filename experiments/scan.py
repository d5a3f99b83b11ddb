r"""BKI scan of a training set: suspicious words, the keyword, the flagged texts.

An attack run's workdir (`experiments.attack` or `experiments.pipeline`):

    python -m experiments.scan --workdir=runs/imdb_tfla --p=5 --variant=paper

Your own model and training set (trained anywhere; no attack run, no ground truth
needed: precision/recall appear when the data has an is_poisoned column):

    python -m experiments.scan --model=my_model.keras --representation_layer=encoder \
      --vocabulary=vocab.txt --dataset=my_train.jsonl --workdir=runs/my_scan
    python -m experiments.purify --workdir=runs/my_scan   # the purified set beside it

A model that starts with a TextVectorization layer needs no --vocabulary; a sequence
(3-D) representation needs --pool=last|mean|max. Writes scan/scan.json, scan/scan.md
(top-20 dictionary), scan/scores.npz and scan/tensorboard/ (`tensorboard
--logdir=<workdir>/scan/tensorboard`); while it runs, scan/chunks/ holds finished
chunks, so a killed scan resumes where it stopped.
"""

from absl import app, flags

from bki_tf.runs import external, pipeline
from experiments import common_flags as cf

_USED = cf.use(
    cf.BKI, "workdir", "overwrite", "tensorboard", "dataset", "text_column", "label_column", "train_split",
    "train_size", "seed", "max_len",
)  # fmt: skip

_MODEL = flags.DEFINE_string(
    "model", None, "Your own .keras model to scan (instead of an attack run's victim)."
)
_VOCABULARY = flags.DEFINE_string(
    "vocabulary",
    None,
    "With --model on token ids: its vocabulary file, one token per line, index = id "
    "(0 padding, 1 out-of-vocabulary).",
)
_CUSTOM_OBJECTS = flags.DEFINE_string(
    "custom_objects",
    None,
    "With --model: a module path whose custom_objects dict (or public classes) Keras needs "
    "to load it.",
)
flags.mark_flags_as_required(["workdir"])

_MODEL_ONLY = ("vocabulary", "custom_objects", "dataset", "text_column", "label_column",
               "train_split", "train_size", "max_len")  # fmt: skip


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = cf.bki_config()
    workdir = cf.value("workdir")
    if _MODEL.value:
        if not cf.value("dataset"):
            raise app.UsageError("--model needs --dataset: the training set to scan.")
        model_config = external.ModelScanConfig(
            model=_MODEL.value,
            dataset=cf.value("dataset"),
            vocabulary=_VOCABULARY.value,
            custom_objects=_CUSTOM_OBJECTS.value,
            max_len=cf.value("max_len") or external.ModelScanConfig.max_len,
            text_column=cf.value("text_column"),
            label_column=cf.value("label_column"),
            train_split=cf.value("train_split"),
            train_size=cf.value("train_size"),
            seed=cf.value("seed"),
        )
        external.import_model(model_config, workdir, overwrite=cf.value("overwrite"))
    else:
        given = [n for n in _MODEL_ONLY if flags.FLAGS[n].present]
        if given:
            raise app.UsageError(
                f"--{given[0]} applies with --model only (an attack run's workdir already "
                "holds its data and victim)."
            )
    record = pipeline.run_scan(
        workdir, config, overwrite=cf.value("overwrite"), tensorboard=cf.value("tensorboard")
    )
    print(record.summary())


if __name__ == "__main__":
    cf.run(main, _USED)
