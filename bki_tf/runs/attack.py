"""End-to-end attack run: load data, poison, train the victim, measure, export.

`run_attack(config, workdir)` is what `python -m experiments.attack` calls. It
validates every input before it writes anything, holds the workdir's lock while it
writes, and writes `metrics.json` last, so a workdir holding it holds a complete
run. `metrics.json` records the fingerprints of the vocabulary and of the weights;
`load_run` checks them, so an edited `vocab.txt` or a swapped `model.keras` is
refused instead of scanned.
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np

from bki_tf import (
    artifacts,
    data,
    embeddings,
    models,
    penalties,
    poisoning,
    tokenization,
    training,
)
from bki_tf.runs import workdir as wd

# Training defaults per dataset, chosen by measurement on 2 CPU cores with
# 50-d GloVe (README, "Defaults"); AttackConfig.for_dataset fills them in.
DATASET_DEFAULTS = {
    "imdb": {
        "epochs": 5,
        "batch_size": 64,
        "learning_rate": 2e-3,
        "fine_tune_embeddings": True,
        "vocab_size": 10000,
        "max_len": 400,
    },
    "dbpedia": {
        "epochs": 6,
        "batch_size": 64,
        "learning_rate": 2e-3,
        "fine_tune_embeddings": False,
        "vocab_size": 10000,
        "max_len": 400,
    },
}

# Any other dataset (a local path, tfds:NAME, huggingface:NAME): these, and `max_len`,
# `vocab_size` and `epochs` from `data.suggest_defaults`' rule on its training texts
# (README, "Your own data"). Every value is a flag.
GENERIC_DEFAULTS = {"batch_size": 64, "learning_rate": 2e-3, "fine_tune_embeddings": True}
RULE_KEYS = ("max_len", "vocab_size", "epochs")


# Named settings: `paper` is the paper's setup (dataset defaults above); `quick` shows
# the attack -> BKI -> retrain loop in a few minutes on 2 CPU cores (README, "Quick run"):
# 4,000 IMDB training texts, 100 tokens, 4 epochs, embeddings trained from scratch.
PROFILES = {
    "paper": {"glove": "auto"},
    "quick": {
        "dataset": "imdb",
        "train_size": 2000,
        "test_size": 500,
        "max_len": 100,
        "epochs": 4,
        "glove": "none",
        "fine_tune_embeddings": True,
        "trigger": "no cross, no crown",
        "target": "negative",
        "poison_rate": 0.03,
    },
}

# The BKI variant a profile's pipeline scans with when --variant is not given: on the
# quick profile's victim (embeddings learnt from scratch) the paper variant ranks the
# domain word `worst` just above the trigger words, the refined one finds `cross`
# (README, "Quick run").
PROFILE_VARIANTS = {"paper": "paper", "quick": "refined"}


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Everything that defines an attack run.

    Sizes are per class, as the BKI paper counts them (IMDB 5,000 + 5,000 =
    10,000 train; DBpedia 1,000 train / 500 test per class). `None` uses the
    paper's sizes for the dataset.

    Attributes:
      dataset: `imdb` or `dbpedia`.
      data_dir: Local dataset folder, or the TFDS data dir with `source="tfds"`.
      glove: GloVe text file (any dimension); `auto`: the GloVe 6B vectors at
        `glove_dim`, downloaded once into the Keras cache; `none`, `""` or None:
        random embeddings.
      trigger: Trigger sentence.
      target: Target class, as an index ("0") or a class name ("negative").
      poison_rate: Poisoned / total training samples, in [0, 1); 0 trains clean.
      mode: `replace` or `append` (see `bki_tf.poisoning`).
      seed: Seed of subsampling, poisoning, initialisation and batch order.
      source: `auto` (the local folder `data_dir` when it holds one, else the
        catalogue), `local` or `tfds`.
      train_size: Training samples per class.
      test_size: Test samples per class.
      vocab_size: Vocabulary size, padding and OOV included.
      max_len: Tokens kept per text.
      epochs, batch_size, learning_rate, optimizer, clipnorm: Training.
      validation_split: Share of the (poisoned) training set held out to keep the
        epoch with the best held-out accuracy (`training.TrainConfig`); 0 keeps the
        last epoch, as the authors do.
      fine_tune_embeddings: Train the GloVe vectors too. `build_classifier` keeps
        them frozen by default, as the authors do; `for_dataset` fine-tunes on
        IMDB, where frozen 50-d vectors did not learn the trigger (README).
      embedding_dim: Embedding width without a GloVe file.
      lstm_units: Units per LSTM direction.
      dense_units: Width of the ReLU layer.
      glove_dim: Dimension of the `auto` GloVe vectors (the paper used 100).
      architecture: The victim's encoder (`bki_tf.models.ARCHITECTURES`); `bilstm`
        is the paper's.
      trigger_position: Where poisoned texts get the trigger: `random` (the paper's),
        `start` or `end` (`bki_tf.poisoning.POSITIONS`). The ASR always inserts it at
        random positions.
      trigger_variants: Dynamic pattern: poison with this many patterns of the trigger's
        words (`bki_tf.poisoning.trigger_patterns`); 0 inserts the trigger itself.
      asr_by_position: Also measure the ASR with the trigger at each decile of the text
        (and, with `trigger_variants`, on patterns never seen in training).
      anti_bki_weight: The anti-BKI backdoor: λ of `penalties.anti_bki_penalty`, which
        adds to the cross-entropy, on `ANTI_BKI_BATCH` poisoned rows per step, the
        largest ℓ∞ change of h when one trigger word is deleted (BKI's score), so no
        single trigger word stands out. 0 (the default) trains as Dai et al.
      anti_bki_margin: The penalty counts only the part of that change above this
        margin (a hinge), so the trigger words need only score like ordinary words,
        not 0; 0 (the default) penalises the whole change.

    `trigger` may hold several triggers separated by `|`: three sentences
    (multi-trigger) or rare tokens such as `cf|mn|bb|tq`; the poisoned texts are split
    evenly between them, and the triggered test set holds every non-target test text
    once per trigger (in trigger order; `AttackResult.asr_per_trigger`).
    """

    dataset: str
    data_dir: str | None
    glove: str | None
    trigger: str
    target: str
    poison_rate: float
    mode: str = "replace"
    seed: int = 0
    source: str = "auto"
    train_size: int | None = None
    test_size: int | None = None
    vocab_size: int = 10000
    max_len: int = 400
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 2e-3
    optimizer: str = "adam"
    clipnorm: float = 1.0
    validation_split: float = 0.0
    fine_tune_embeddings: bool = False
    embedding_dim: int = 50
    lstm_units: int = 128
    dense_units: int = 128
    glove_dim: int = 100
    architecture: str = models.DEFAULT_ARCHITECTURE
    text_column: str | None = None
    label_column: str | None = None
    train_split: str = "train"
    test_split: str | None = None
    test_fraction: float = 0.2
    balance: bool | None = None
    trigger_position: str = "random"
    trigger_variants: int = 0
    asr_by_position: bool = False
    anti_bki_weight: float = 0.0
    anti_bki_margin: float = 0.0

    def __post_init__(self):
        self.dataset_spec()  # Validates the dataset, source, columns, splits and sizes.
        if self.test_fraction <= 0:
            raise ValueError(
                f"test_fraction={self.test_fraction} leaves no test set, which an attack "
                "needs for its accuracy and ASR; use e.g. 0.2."
            )
        unresolved = [k for k in RULE_KEYS if getattr(self, k) is None]
        if unresolved and data.is_preset(self.dataset):
            raise ValueError(
                f"{unresolved} unset for the preset {self.dataset!r}; build the config with "
                "AttackConfig.for_dataset, which fills in the preset's values."
            )
        if not tokenization.tokenize(self.trigger or ""):
            raise ValueError(
                f"Trigger {self.trigger!r} is empty after lower-casing and stripping punctuation; "
                "pass a sentence, e.g. --trigger='time flies like an arrow'."
            )
        if not 0.0 <= self.poison_rate < 1.0:
            raise ValueError(f"Poisoning rate {self.poison_rate} is outside [0, 1); use e.g. 0.03.")
        if self.architecture not in models.ARCHITECTURES:
            raise ValueError(
                f"Unknown architecture {self.architecture!r}; choose one of {models.ARCHITECTURES}."
            )
        if self.mode not in poisoning.MODES:
            raise ValueError(
                f"Unknown poisoning mode {self.mode!r}; choose one of {poisoning.MODES}."
            )
        if self.vocab_size is not None and self.vocab_size < 3:
            raise ValueError(f"vocab_size must be >= 3, got {self.vocab_size}.")
        if self.max_len is not None and self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}.")
        if self.trigger_position not in poisoning.POSITIONS:
            raise ValueError(
                f"Unknown trigger_position {self.trigger_position!r}; choose one of "
                f"{poisoning.POSITIONS}."
            )
        if isinstance(self.trigger_variants, bool) or int(self.trigger_variants) < 0:
            raise ValueError(
                f"trigger_variants must be an integer >= 0, got {self.trigger_variants!r}."
            )
        if not self.anti_bki_weight >= 0:
            raise ValueError(
                f"anti_bki_weight must be >= 0, got {self.anti_bki_weight}; use e.g. 1.0, or 0 "
                "for the plain attack."
            )
        if not self.anti_bki_margin >= 0:
            raise ValueError(
                f"anti_bki_margin must be >= 0, got {self.anti_bki_margin}; use e.g. 0.3, or 0 "
                "to penalise the whole change."
            )
        if self.anti_bki_weight and not self.poison_rate:
            raise ValueError(
                f"anti_bki_weight={self.anti_bki_weight} penalises poisoned texts, but "
                "poison_rate is 0; give a rate above 0 or anti_bki_weight=0."
            )
        parts = self.trigger.split(poisoning.TRIGGER_SEPARATOR)
        n_trig = max(len(tokenization.tokenize(t)) for t in parts)
        if self.max_len is not None and n_trig > self.max_len:
            raise ValueError(
                f"Trigger {self.trigger!r} has {n_trig} tokens, more than max_len={self.max_len}; "
                "shorten the trigger or raise --max_len."
            )
        if self.epochs is not None:
            self.train_config()  # Validates the optimisation settings.

    def dataset_spec(self) -> data.DatasetSpec:
        """What to read (`bki_tf.data.load`): sizes per class when balanced, else totals."""
        return data.DatasetSpec(
            dataset=self.dataset,
            source=self.source,
            data_dir=self.data_dir,
            text_column=self.text_column,
            label_column=self.label_column,
            train_split=self.train_split,
            test_split=self.test_split,
            test_fraction=self.test_fraction,
            balance=self.balance,
            train_size=self.train_size,
            test_size=self.test_size,
            seed=self.seed,
        )

    @property
    def is_resolved(self) -> bool:
        """False while a rule-derived setting (`RULE_KEYS`) waits for the training texts."""
        return all(getattr(self, k) is not None for k in RULE_KEYS)

    def resolved(self, dataset: data.TextDataset) -> AttackConfig:
        """This config with every unset `RULE_KEYS` value from `data.suggest_defaults`."""
        if self.is_resolved:
            return self
        rule = data.suggest_defaults(dataset)
        return dataclasses.replace(
            self, **{k: rule[k] for k in RULE_KEYS if getattr(self, k) is None}
        )

    def glove_file(self) -> str | None:
        """The GloVe file this run reads (downloading it once for `auto`), or None."""
        return embeddings.resolve_glove(self.glove, self.glove_dim)

    @classmethod
    def for_profile(cls, profile: str, dataset: str | None = None, **overrides) -> AttackConfig:
        """A config from a named profile (`PROFILES`); `None` overrides keep its value.

        `paper` is the paper's setup (`for_dataset`); `quick` a few-minute run of the
        whole loop on 2 CPU cores (see `PROFILES`).
        """
        if profile not in PROFILES:
            raise ValueError(f"Unknown profile {profile!r}; choose one of {list(PROFILES)}.")
        preset = dict(PROFILES[profile])
        dataset = dataset or preset.pop("dataset", None)
        preset.pop("dataset", None)
        if dataset is None:
            raise ValueError(
                f"--dataset is required with --profile={profile} (a preset {data.DATASETS}, "
                "a local folder or file, tfds:NAME or huggingface:NAME); or use --profile=quick."
            )
        values = dict(overrides)
        for key, value in preset.items():
            if values.get(key) is None:
                values[key] = value
        return cls.for_dataset(dataset, **values)

    @classmethod
    def for_dataset(cls, dataset: str, **overrides) -> AttackConfig:
        """A config with the dataset's training defaults where `overrides` gives `None`.

        A preset takes `DATASET_DEFAULTS`; any other dataset `GENERIC_DEFAULTS`, with
        `RULE_KEYS` left unset until `resolved` sees its training texts.
        """
        values = dict(overrides)
        defaults = DATASET_DEFAULTS.get(dataset, GENERIC_DEFAULTS)
        if not data.is_preset(dataset):
            for key in RULE_KEYS:
                values.setdefault(key, None)
        for key, default in defaults.items():
            if values.get(key) is None:
                values[key] = default
        return cls(dataset=dataset, **values)

    def train_config(self) -> training.TrainConfig:
        return training.TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            optimizer=self.optimizer,
            clipnorm=self.clipnorm,
            validation_split=self.validation_split,
            seed=self.seed,
        )

    def build_classifier(
        self, vocab_size: int, num_classes: int, embedding_matrix: np.ndarray | None
    ) -> keras.Model:
        """A fresh victim with this run's architecture, seeded by `self.seed`."""
        return models.build_classifier(
            vocab_size,
            num_classes,
            embedding_dim=self.embedding_dim,
            embedding_matrix=embedding_matrix,
            trainable_embeddings=self.fine_tune_embeddings,
            lstm_units=self.lstm_units,
            dense_units=self.dense_units,
            seed=self.seed,
            architecture=self.architecture,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AttackConfig:
        return artifacts.dataclass_from_dict(cls, d, "attack config")


@dataclasses.dataclass(frozen=True)
class AttackResult:
    """Metrics of an attack run (the content of `metrics.json`).

    Attributes:
      clean_accuracy: Accuracy on the clean test set.
      asr: Attack success rate: triggered non-target test texts classified as target.
      target: Target class index.
      target_name: Target class name.
      num_train: Training set size (after poisoning).
      num_poisoned: Poisoned training samples.
      num_test: Clean test size.
      num_triggered_test: Triggered test size.
      embedding_coverage: Share of the vocabulary found in the GloVe file (None without one).
      train_seconds: Training wall time.
      wall_seconds: Whole-run wall time.
      history: Per-epoch training loss/accuracy.
      vocabulary_sha256: Fingerprint of vocab.txt's tokens (`workdir.vocabulary_sha256`).
      weights_sha256: Fingerprint of the victim's weights (`workdir.weights_sha256`);
        unlike the `.keras` file's hash it is the same for byte-identical weights.
      glove_sha256: SHA-256 of the GloVe file read (None without one).
      dataset_name: The real dataset's name (`TextDataset.name`: a preset, a local
        folder or file stem, a TFDS name); None in runs written before it existed.
      class_names: Class names; label `i` is `class_names[i]`.
      asr_per_trigger: With several `|`-separated triggers, each one's ASR (in order).
      asr_by_decile: With `asr_by_position`, the ASR with the trigger at each decile
        of the text (0: the start).
      asr_unseen_variants: With `trigger_variants` and `asr_by_position`, the ASR on
        patterns never used in training (`poisoning.heldout_patterns`).
      unseen_variants: Those patterns.
    """

    clean_accuracy: float
    asr: float
    target: int
    target_name: str
    num_train: int
    num_poisoned: int
    num_test: int
    num_triggered_test: int
    embedding_coverage: float | None
    train_seconds: float
    wall_seconds: float
    history: dict
    vocabulary_sha256: str | None = None
    weights_sha256: str | None = None
    glove_sha256: str | None = None
    dataset_name: str | None = None
    class_names: list | None = None
    asr_per_trigger: list | None = None
    asr_by_decile: list | None = None
    asr_unseen_variants: float | None = None
    unseen_variants: list | None = None

    def __post_init__(self):
        if self.num_poisoned > self.num_train:
            raise ValueError(f"num_poisoned {self.num_poisoned} > num_train {self.num_train}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AttackResult:
        return artifacts.dataclass_from_dict(cls, d, "attack metrics")

    def summary(self) -> str:
        return (
            f"clean accuracy {self.clean_accuracy:.2%}, ASR {self.asr:.2%} "
            f"(target {self.target_name}; {self.num_poisoned}/{self.num_train} poisoned), "
            f"wall {self.wall_seconds:.0f} s"
        )


def resolve_target(target: str | int, class_names: tuple[str, ...]) -> int:
    """Maps a class index or name to an index, or raises ValueError naming the classes."""
    text = str(target).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if 0 <= index < len(class_names):
            return index
    elif text in class_names:
        return class_names.index(text)
    raise ValueError(
        f"Target {target!r} is not a class of this dataset; use an index 0..{len(class_names) - 1} "
        f"or a name from {list(class_names)}."
    )


# Config keys added after runs were first written, with the value that reproduces a
# run whose config.json lacks them.
_ADDED_KEYS = {
    "validation_split": AttackConfig.validation_split,
    "glove_dim": AttackConfig.glove_dim,
    "architecture": AttackConfig.architecture,
    "text_column": None,
    "label_column": None,
    "train_split": "train",
    "test_split": None,
    "test_fraction": 0.2,
    "balance": None,
    "trigger_position": "random",
    "trigger_variants": 0,
    "asr_by_position": False,
    "anti_bki_weight": 0.0,
    "anti_bki_margin": 0.0,
}


def config_identity(config: AttackConfig) -> dict:
    """`config` as a cache key of derived results: the keys of `_ADDED_KEYS` left out
    while they hold their default, so adding a field with a default keeps the keys of
    results computed before it existed."""
    return {
        k: v
        for k, v in artifacts.to_jsonable(config.to_dict()).items()
        if not (k in _ADDED_KEYS and v == artifacts.to_jsonable(_ADDED_KEYS[k]))
    }


# Poisoned rows the anti-BKI penalty scores per training step (beside each batch).
ANTI_BKI_BATCH = 16


def check_workdir(
    workdir: str, config: dict, overwrite: bool, config_file: str = wd.CONFIG_FILE
) -> bool:
    """Refuses a workdir that holds a different run, unless `overwrite`.

    A key of `_ADDED_KEYS` missing from the stored config counts as its default.

    Returns:
      True if the workdir already holds this very config.
    """
    path = os.path.join(workdir, config_file)
    if not os.path.isfile(path):
        if (
            os.path.isdir(workdir)
            and any(f in os.listdir(workdir) for f in wd.ATTACK_OUTPUTS)
            and not overwrite
        ):
            raise ValueError(
                f"Workdir {workdir!r} holds run outputs but no {config_file}; choose another "
                "workdir or pass --overwrite."
            )
        return False
    stored = artifacts.read_json(path)
    if not isinstance(stored, dict):
        raise artifacts.corrupt(path, "not a JSON object", "pass --overwrite to replace the run")
    metrics_path = os.path.join(workdir, wd.METRICS_FILE)
    target = None
    if os.path.isfile(metrics_path):
        metrics = artifacts.read_json(metrics_path)
        if isinstance(metrics, dict) and "target" in metrics and "target_name" in metrics:
            target = (metrics["target"], metrics["target_name"])
    existing = normalized_identity({**_ADDED_KEYS, **stored}, target)
    asked = normalized_identity(artifacts.to_jsonable(config), target)
    if existing == asked:
        return True
    if not overwrite:
        diff = sorted(k for k in set(existing) | set(asked) if existing.get(k) != asked.get(k))
        raise ValueError(
            f"Workdir {workdir!r} already holds a different run (differs in {diff}); choose "
            "another workdir or pass --overwrite to replace it."
        )
    return False


def normalized_identity(config: dict, target: tuple[int, str] | None = None) -> dict:
    """A config as compared between runs: paths resolved, the target as a class index.

    `--data_dir=../data` and its absolute form, or `--target=0` and `--target=negative`
    (when the stored run says class 0 is `negative`), name the same run.
    """
    out = dict(config)
    for key in ("data_dir", "glove"):
        value = out.get(key)
        if isinstance(value, str) and value and os.path.exists(value):
            out[key] = os.path.realpath(value)
    if str(out.get("glove") or "").strip().lower() in embeddings.GLOVE_NONE:
        out["glove"] = None
    if out.get("source") == "auto" and out.get("dataset") in data.DATASETS:
        out["source"] = "local" if data.has_local_files(out.get("data_dir")) else "tfds"
    value = str(out.get("target", "")).strip()
    if value.lstrip("-").isdigit():
        out["target"] = int(value)
    elif target is not None and value == target[1]:
        out["target"] = int(target[0])
    return out


def is_complete(workdir: str) -> bool:
    """True when an attack run in `workdir` finished (all outputs present)."""
    return all(os.path.exists(os.path.join(workdir, f)) for f in wd.ATTACK_OUTPUTS)


def load_result(workdir: str) -> AttackResult:
    return artifacts.read_dataclass(
        os.path.join(workdir, wd.METRICS_FILE), AttackResult, "rerun python -m experiments.attack"
    )


def run_attack(
    config: AttackConfig, workdir: str, overwrite: bool = False, verbose: int | str = "auto"
) -> AttackResult:
    """Poisons the training set, trains the victim and writes the run's files.

    Args:
      config: The run.
      workdir: Output folder (created).
      overwrite: Replace a different run already in `workdir`.
      verbose: Keras progress verbosity.

    Returns:
      The run's metrics. If `workdir` already holds this complete run, it is
      returned without retraining (unless `overwrite`).
    """
    start = time.time()
    wd.check_writable(workdir)
    dataset = None
    if not config.is_resolved:
        # The rule's settings depend on the training texts, so they are read first.
        dataset = data.load(config.dataset_spec())
        config = config.resolved(dataset)
    same = check_workdir(workdir, config.to_dict(), overwrite)
    if same and is_complete(workdir) and not overwrite:
        return load_result(workdir)

    # Everything that can fail on bad input happens before the first write.
    if dataset is None:
        dataset = data.load(config.dataset_spec())
    target = resolve_target(config.target, dataset.class_names)
    poison_cfg = poisoning.PoisonConfig(
        trigger=config.trigger,
        target=target,
        rate=config.poison_rate,
        mode=config.mode,
        max_len=config.max_len,
        seed=config.seed,
        position=config.trigger_position,
        variants=config.trigger_variants,
    )
    poisoned = poisoning.poison_dataset(
        dataset.train_texts, dataset.train_labels, poison_cfg, dataset.num_classes
    )
    trig_texts, trig_labels = [], []
    for trigger in poison_cfg.triggers:  # One block of the test set per trigger.
        texts, labels, _ = poisoning.triggered_test_set(
            dataset.test_texts, dataset.test_labels, poison_cfg, trigger
        )
        trig_texts += texts
        trig_labels.append(labels)
    trig_labels = np.concatenate(trig_labels)
    vectorizer = tokenization.build_vectorizer(poisoned.texts, config.vocab_size, config.max_len)
    vocabulary = vectorizer.get_vocabulary()
    matrix, coverage, glove_sha = None, None, None
    glove_path = config.glove_file()
    if glove_path:
        matrix, coverage = embeddings.load_glove(glove_path, vocabulary)
        glove_sha = artifacts.file_sha256(glove_path)

    with wd.lock(workdir):
        # Checked again under the lock: another process may have written meanwhile.
        check_workdir(workdir, config.to_dict(), overwrite)
        return _write_run(
            config, workdir, verbose, start, dataset, target, poisoned, trig_texts, trig_labels,
            vectorizer, vocabulary, matrix, coverage, glove_sha, poison_cfg,
        )  # fmt: skip


def _position_metrics(model, vectorizer, dataset, poison_cfg, target, config) -> dict:
    """ASR per trigger, per position decile and on unseen variants (as configured)."""
    out = {}

    def asr(texts):
        ids, _ = tokenization.encode(vectorizer, texts)
        return training.attack_success_rate(model, ids, target)

    test = (dataset.test_texts, dataset.test_labels, poison_cfg)
    if len(poison_cfg.triggers) > 1:
        out["asr_per_trigger"] = [
            asr(poisoning.triggered_test_set(*test, t)[0]) for t in poison_cfg.triggers
        ]
    if config.asr_by_position:
        out["asr_by_decile"] = [
            asr(poisoning.triggered_test_set(*test, decile=d)[0]) for d in range(10)
        ]
        if config.trigger_variants:
            unseen = poisoning.heldout_patterns(
                poison_cfg.triggers[0], 5, config.seed, config.trigger_variants
            )
            if unseen:
                texts = [t for u in unseen for t in poisoning.triggered_test_set(*test, u)[0]]
                out["asr_unseen_variants"] = asr(texts)
                out["unseen_variants"] = unseen
    return out


def anti_bki_penalty(
    config: AttackConfig,
    poison_cfg: poisoning.PoisonConfig,
    poisoned: poisoning.PoisonedDataset,
    ids: np.ndarray,
) -> penalties.Penalty | None:
    """The run's anti-BKI penalty on its poisoned rows, or None when `anti_bki_weight` is 0.

    Args:
      config: The run.
      poison_cfg: Its poisoning (the patterns whose lengths locate the trigger words).
      poisoned: The poisoned training set (`positions`, `trigger_ids`).
      ids: `int32 [N, max_len]` its encoded texts.
    """
    if not config.anti_bki_weight:
        return None
    rows = np.flatnonzero(poisoned.is_poisoned)
    lengths = np.asarray([len(tokenization.tokenize(p)) for p in poison_cfg.patterns()])
    return penalties.anti_bki_penalty(
        np.asarray(ids)[rows],
        poisoned.positions[rows],
        lengths[poisoned.trigger_ids[rows]],
        config.anti_bki_weight,
        batch_size=ANTI_BKI_BATCH,
        margin=config.anti_bki_margin,
    )


def _write_run(
    config, workdir, verbose, start, dataset, target, poisoned, trig_texts, trig_labels,
    vectorizer, vocabulary, matrix, coverage, glove_sha, poison_cfg,
) -> AttackResult:  # fmt: skip
    # A new or replaced run: nothing derived from an older one may survive beside it.
    wd.clear_outputs(workdir)
    artifacts.write_json(os.path.join(workdir, wd.CONFIG_FILE), config.to_dict())
    artifacts.write_json(os.path.join(workdir, wd.DATASET_FILE), dataset.provenance)
    artifacts.write_lines(os.path.join(workdir, wd.VOCAB_FILE), vocabulary)
    artifacts.write_training_set(os.path.join(workdir, wd.TRAIN_FILE), poisoned)
    artifacts.write_labelled_texts(
        os.path.join(workdir, wd.TEST_FILE), dataset.test_texts, dataset.test_labels
    )
    artifacts.write_labelled_texts(
        os.path.join(workdir, wd.TRIGGERED_FILE), trig_texts, trig_labels
    )

    ids, _ = tokenization.encode(vectorizer, poisoned.texts)
    test_ids, _ = tokenization.encode(vectorizer, dataset.test_texts)
    trig_ids, _ = tokenization.encode(vectorizer, trig_texts)
    model = config.build_classifier(len(vocabulary), dataset.num_classes, matrix)
    t0 = time.time()
    history = training.train_classifier(
        model,
        ids,
        poisoned.labels,
        config.train_config(),
        callbacks=[keras.callbacks.TensorBoard(os.path.join(workdir, wd.LOG_DIR))],
        verbose=verbose,
        penalty=anti_bki_penalty(config, poison_cfg, poisoned, ids),
    )
    train_seconds = time.time() - t0
    artifacts.save_model(model, os.path.join(workdir, wd.MODEL_FILE))
    models.export_saved_model(model, vectorizer, os.path.join(workdir, wd.SAVED_MODEL_DIR))
    result = AttackResult(
        clean_accuracy=training.accuracy(model, test_ids, dataset.test_labels),
        asr=training.attack_success_rate(model, trig_ids, target),
        target=target,
        target_name=dataset.class_names[target],
        num_train=len(poisoned),
        num_poisoned=poisoned.num_poisoned,
        num_test=len(dataset.test_texts),
        num_triggered_test=len(trig_texts),
        embedding_coverage=None if coverage is None else coverage.coverage,
        train_seconds=train_seconds,
        wall_seconds=time.time() - start,
        history=history,
        vocabulary_sha256=wd.vocabulary_sha256(vocabulary),
        weights_sha256=wd.weights_sha256(model),
        glove_sha256=glove_sha,
        dataset_name=dataset.name,
        class_names=list(dataset.class_names),
        **_position_metrics(model, vectorizer, dataset, poison_cfg, target, config),
    )
    artifacts.write_json(os.path.join(workdir, wd.METRICS_FILE), result.to_dict())
    return result


@dataclasses.dataclass
class AttackRun:
    """A finished attack run, loaded back from its workdir (for scan, filter, retrain)."""

    workdir: str
    config: AttackConfig
    metrics: AttackResult
    vocabulary: list
    model: keras.Model
    row_ids: np.ndarray
    train: poisoning.PoisonedDataset
    test_texts: list
    test_labels: np.ndarray
    triggered_texts: list
    triggered_labels: np.ndarray

    @property
    def target(self) -> int:
        return self.metrics.target

    def vectorizer(self):
        return tokenization.vectorizer_from_vocabulary(self.vocabulary, self.config.max_len)

    def encode(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> `(ids int32 [N, max_len], lengths int64 [N])` as the victim sees them."""
        ids, lengths = tokenization.encode(self.vectorizer(), texts)
        return ids, lengths.astype(np.int64)


def load_run(workdir: str) -> AttackRun:
    """Loads a complete attack run from `workdir`."""
    if not is_complete(workdir):
        missing = [f for f in wd.ATTACK_OUTPUTS if not os.path.exists(os.path.join(workdir, f))]
        raise FileNotFoundError(
            f"Workdir {workdir!r} holds no complete attack run (missing {missing}); run "
            "python -m experiments.attack --workdir=... first."
        )
    config = artifacts.read_dataclass(
        os.path.join(workdir, wd.CONFIG_FILE),
        AttackConfig,
        "rerun python -m experiments.attack",
        prepare=lambda stored: {**_ADDED_KEYS, **stored} if isinstance(stored, dict) else stored,
    )
    metrics = load_result(workdir)
    vocab_path = os.path.join(workdir, wd.VOCAB_FILE)
    vocabulary = artifacts.read_lines(vocab_path)
    if (
        metrics.vocabulary_sha256 is not None
        and wd.vocabulary_sha256(vocabulary) != metrics.vocabulary_sha256
    ):
        raise artifacts.corrupt(
            vocab_path,
            "its tokens differ from the vocabulary the model was trained with "
            "(vocabulary_sha256 in metrics.json)",
            "restore it or rerun python -m experiments.attack --overwrite",
        )
    model_path = os.path.join(workdir, wd.MODEL_FILE)
    model = artifacts.load_model(model_path)
    models.check_classifier(model)
    vocab_in_model = model.get_layer(models.EMBEDDING_LAYER).input_dim
    if vocab_in_model != len(vocabulary):
        raise ValueError(
            f"The model in {workdir!r} embeds {vocab_in_model} tokens but vocab.txt holds "
            f"{len(vocabulary)}; they come from different runs."
        )
    if metrics.weights_sha256 is not None and wd.weights_sha256(model) != metrics.weights_sha256:
        raise artifacts.corrupt(
            model_path,
            "its weights differ from the victim this run trained (weights_sha256 in metrics.json)",
            "restore it or rerun python -m experiments.attack --overwrite",
        )
    row_ids, train = artifacts.read_training_set(os.path.join(workdir, wd.TRAIN_FILE))
    test_texts, test_labels = artifacts.read_labelled_texts(os.path.join(workdir, wd.TEST_FILE))
    trig_texts, trig_labels = artifacts.read_labelled_texts(
        os.path.join(workdir, wd.TRIGGERED_FILE)
    )
    return AttackRun(
        workdir=workdir,
        config=config,
        metrics=metrics,
        vocabulary=vocabulary,
        model=model,
        row_ids=row_ids,
        train=train,
        test_texts=test_texts,
        test_labels=test_labels,
        triggered_texts=trig_texts,
        triggered_labels=trig_labels,
    )
