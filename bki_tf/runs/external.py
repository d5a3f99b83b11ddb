"""A user's own model and training set as a run folder, for scan and purify.

`import_model(config, workdir)` turns a Keras model trained anywhere (no attack run,
no ground truth needed) and the training set it was trained on into a workdir that
`bki_tf.runs.pipeline.run_scan` and `run_filter` read like an attack run:

    config.json            ModelScanConfig.to_dict(), with "kind": "model_scan"
    dataset.json           what was read (bki_tf.data provenance)
    model.keras            a copy of the user's model file (the input stays untouched)
    vocab.txt              id -> token: the vocabulary file, or the model's TextVectorization's
    train.csv.gz           the training texts and labels; is_poisoned from the data's
                           `is_poisoned` column (`bki_tf.data.GROUND_TRUTH_COLUMN`) when it
                           has one, else all 0
    metrics.json           ModelScanInfo: fingerprints, class names, ground truth or not

The model takes token ids with a vocabulary file (texts are tokenized like the
package's victims: lower-cased, punctuation stripped, split on whitespace, ids from
the file, cut to `max_len` tokens) or starts with a `TextVectorization` layer (raw
strings in; its own standardisation, vocabulary and length). Retraining needs the
package's training recipe, so a model scan stops at purify: `train_purified.csv.gz`
is what the user retrains their model on.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil

import keras
import numpy as np

from bki_tf import artifacts, data, poisoning, tokenization
from bki_tf.bki import representation
from bki_tf.runs import workdir as wd

KIND = "model_scan"


@dataclasses.dataclass(frozen=True)
class ModelScanConfig:
    """What a model scan reads.

    Attributes:
      model: The user's `.keras` model file.
      dataset: The training set, as `bki_tf.data.DatasetSpec.dataset` (a local file or
        folder, `tfds:NAME`, a preset); only its training split is scanned.
      vocabulary: For a model on token ids, its vocabulary file (one token per line,
        index = id; id 0 padding, 1 out-of-vocabulary). None for a model that starts
        with a `TextVectorization` layer.
      custom_objects: A module path (e.g. `my_project.layers`) whose `custom_objects`
        dict, or else whose public classes and functions, Keras needs to load the model.
      max_len: Tokens kept per text for a model on ids (a vectorizer's own
        `output_sequence_length` applies otherwise).
      text_column, label_column, train_split: As in `bki_tf.data.DatasetSpec`.
      train_size: Texts to scan, in total (None: all), a seeded uniform draw.
      seed: Seed of that draw.
      kind: Always `"model_scan"` (marks the workdir).
    """

    model: str
    dataset: str
    vocabulary: str | None = None
    custom_objects: str | None = None
    max_len: int = 400
    text_column: str | None = None
    label_column: str | None = None
    train_split: str = "train"
    train_size: int | None = None
    seed: int = 0
    kind: str = KIND

    def __post_init__(self):
        if self.kind != KIND:
            raise ValueError(f"ModelScanConfig.kind must be {KIND!r}, got {self.kind!r}.")
        if not self.model or not str(self.model).endswith(".keras"):
            raise ValueError(
                f"--model={self.model!r} must be a .keras file (model.save('model.keras')); "
                "re-save a SavedModel or .h5 model in the .keras format."
            )
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}.")
        self.dataset_spec()  # Validates the dataset fields.

    def dataset_spec(self) -> data.DatasetSpec:
        return data.DatasetSpec(
            dataset=self.dataset,
            text_column=self.text_column,
            label_column=self.label_column,
            train_split=self.train_split,
            test_fraction=0.0,  # Every training row is scanned; no test set is needed.
            balance=False,
            train_size=self.train_size,
            seed=self.seed,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelScanConfig:
        return artifacts.dataclass_from_dict(cls, d, "model scan config")


@dataclasses.dataclass(frozen=True)
class ModelScanInfo:
    """The content of a model scan's `metrics.json`.

    Attributes:
      dataset_name: The real dataset's name (`TextDataset.name`).
      class_names: Label `i` is `class_names[i]`.
      num_train: Texts scanned.
      has_ground_truth: The data had an `is_poisoned` column (precision/recall apply).
      num_poisoned: Rows marked poisoned (0 without ground truth).
      vectorizer: True when the model reads raw strings through its own vectorizer.
      model_sha256: SHA-256 of the model file as given.
      weights_sha256, vocabulary_sha256: Fingerprints (`bki_tf.runs.workdir`).
    """

    dataset_name: str
    class_names: list
    num_train: int
    has_ground_truth: bool
    num_poisoned: int
    vectorizer: bool
    model_sha256: str
    weights_sha256: str
    vocabulary_sha256: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelScanInfo:
        return artifacts.dataclass_from_dict(cls, d, "model scan metrics")


@dataclasses.dataclass
class ModelRun:
    """A model scan's workdir loaded back (what scan and purify read)."""

    workdir: str
    config: ModelScanConfig
    metrics: ModelScanInfo
    vocabulary: list
    model: keras.Model
    row_ids: np.ndarray
    train: poisoning.PoisonedDataset

    def encode(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> `(ids int32 [N, L], lengths int64 [N])` as the model sees them."""
        if self.metrics.vectorizer:
            return representation.encode_strings(self.model, texts)
        vectorizer = tokenization.vectorizer_from_vocabulary(self.vocabulary, self.config.max_len)
        ids, lengths = tokenization.encode(vectorizer, texts)
        return ids, lengths.astype(np.int64)


def is_model_scan(workdir: str) -> bool:
    """True when `workdir/config.json` describes a model scan."""
    path = os.path.join(workdir, wd.CONFIG_FILE)
    if not os.path.isfile(path):
        return False
    stored = artifacts.read_json(path)
    return isinstance(stored, dict) and stored.get("kind") == KIND


def load_custom_objects(module: str | None) -> dict | None:
    """The `custom_objects` of `--custom_objects=<module path>` (None: none)."""
    if not module:
        return None
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(
            f"--custom_objects={module!r} cannot be imported ({e}); pass an importable module "
            "path (on PYTHONPATH) that defines the model's custom layers."
        ) from None
    found = getattr(mod, "custom_objects", None)
    if not isinstance(found, dict):
        found = {
            name: value
            for name, value in vars(mod).items()
            if not name.startswith("_") and isinstance(value, type | type(load_custom_objects))
        }
    objects = dict(found)
    # Saved configs name registered objects as `package>Name`: offer that key too.
    for value in found.values():
        objects.setdefault(keras.saving.get_registered_name(value), value)
    return objects


def load_user_model(path: str, custom_objects: str | None = None) -> keras.Model:
    """Loads `path` with `safe_mode=True`; a missing custom object names the fix."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--model={path!r} not found; pass the .keras file to scan.")
    objects = load_custom_objects(custom_objects)
    try:
        return artifacts.load_model(path, custom_objects=objects)
    except (TypeError, artifacts.CorruptFileError) as e:
        text = str(e)
        if "custom" in text.lower() or "locate" in text.lower() or "register" in text.lower():
            raise ValueError(
                f"Keras cannot rebuild {path!r} without its custom objects "
                f"({' '.join(text.split())[:160]}); pass --custom_objects=<module path> of the "
                "module that defines them."
            ) from None
        raise


def import_model(config: ModelScanConfig, workdir: str, overwrite: bool = False) -> ModelRun:
    """Writes the model-scan workdir (see the module docstring) and loads it back.

    A workdir that already holds this very import is reused; one holding something
    else needs `overwrite`. Everything is checked before the first write.
    """
    wd.check_writable(workdir)
    path = os.path.join(workdir, wd.CONFIG_FILE)
    if os.path.isfile(path) and not overwrite:
        stored = artifacts.read_json(path)
        if stored == config.to_dict() and os.path.isfile(os.path.join(workdir, wd.METRICS_FILE)):
            return load_run(workdir)
        raise ValueError(
            f"Workdir {workdir!r} already holds another run; choose another workdir or pass "
            "--overwrite to replace it."
        )
    model = load_user_model(config.model, config.custom_objects)
    has_vectorizer = representation.text_vectorizer(model) is not None
    if has_vectorizer:
        vocabulary = representation.model_vocabulary(model)
        if config.vocabulary:
            raise ValueError(
                f"--vocabulary={config.vocabulary!r} given, but the model reads raw strings "
                "through its own TextVectorization layer; drop --vocabulary."
            )
    else:
        if not config.vocabulary:
            raise ValueError(
                f"The model {config.model!r} takes token ids: pass --vocabulary=<file with one "
                "token per line, index = id> (or scan a model that starts with TextVectorization)."
            )
        vocabulary = representation.model_vocabulary(model, artifacts.read_lines(config.vocabulary))
    dataset = data.load(config.dataset_spec())
    poisoned = dataset.train_is_poisoned
    info = ModelScanInfo(
        dataset_name=dataset.name,
        class_names=list(dataset.class_names),
        num_train=len(dataset.train_texts),
        has_ground_truth=poisoned is not None,
        num_poisoned=0 if poisoned is None else int(poisoned.sum()),
        vectorizer=has_vectorizer,
        model_sha256=artifacts.file_sha256(config.model),
        weights_sha256=wd.weights_sha256(model),
        vocabulary_sha256=wd.vocabulary_sha256(vocabulary),
    )
    n = len(dataset.train_texts)
    train = poisoning.PoisonedDataset(
        texts=list(dataset.train_texts),
        labels=np.asarray(dataset.train_labels, np.int64),
        is_poisoned=np.zeros(n, bool) if poisoned is None else poisoned,
        positions=np.full(n, -1, np.int64),
        original_labels=np.asarray(dataset.train_labels, np.int64),
        source_ids=np.arange(n, dtype=np.int64),
    )
    with wd.lock(workdir):
        wd.clear_outputs(workdir)
        artifacts.write_json(path, config.to_dict())
        artifacts.write_json(os.path.join(workdir, wd.DATASET_FILE), dataset.provenance)
        with artifacts.atomic_path(os.path.join(workdir, wd.MODEL_FILE), suffix=".keras") as tmp:
            shutil.copyfile(config.model, tmp)
        artifacts.write_lines(os.path.join(workdir, wd.VOCAB_FILE), vocabulary)
        artifacts.write_training_set(os.path.join(workdir, wd.TRAIN_FILE), train)
        artifacts.write_json(os.path.join(workdir, wd.METRICS_FILE), info.to_dict())
    return load_run(workdir)


def load_run(workdir: str) -> ModelRun:
    """Loads a model-scan workdir written by `import_model`."""
    config = artifacts.read_dataclass(
        os.path.join(workdir, wd.CONFIG_FILE),
        ModelScanConfig,
        "rerun python -m experiments.scan --model=... --overwrite",
    )
    info = artifacts.read_dataclass(
        os.path.join(workdir, wd.METRICS_FILE),
        ModelScanInfo,
        "rerun python -m experiments.scan --model=... --overwrite",
    )
    vocab_path = os.path.join(workdir, wd.VOCAB_FILE)
    vocabulary = artifacts.read_lines(vocab_path)
    if wd.vocabulary_sha256(vocabulary) != info.vocabulary_sha256:
        raise artifacts.corrupt(
            vocab_path,
            "its tokens differ from the vocabulary recorded at import (metrics.json)",
            "rerun python -m experiments.scan --model=... --overwrite",
        )
    model_path = os.path.join(workdir, wd.MODEL_FILE)
    model = load_user_model(model_path, config.custom_objects)
    if wd.weights_sha256(model) != info.weights_sha256:
        raise artifacts.corrupt(
            model_path,
            "its weights differ from the model imported (weights_sha256 in metrics.json)",
            "rerun python -m experiments.scan --model=... --overwrite",
        )
    row_ids, train = artifacts.read_training_set(os.path.join(workdir, wd.TRAIN_FILE))
    return ModelRun(
        workdir=workdir,
        config=config,
        metrics=info,
        vocabulary=vocabulary,
        model=model,
        row_ids=row_ids,
        train=train,
    )
