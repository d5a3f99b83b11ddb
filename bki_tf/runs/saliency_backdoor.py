"""The saliency backdoor: a trigger that changes the explanation, not the prediction.

Text version of the saliency attacks that train a network so that its saliency map
changes only when a trigger is present, predictions staying accurate: the loss is
cross-entropy + λ · a saliency penalty on triggered inputs only
(`penalties.saliency_penalty`). The trigger is a short token sequence inserted at a
random gap of a training text; the triggered copy keeps the text's label.

  * `untargeted`: the penalty is the share of the gradient x input mass on the `top_k`
    words the *clean* model finds most salient on the untriggered text.
  * `targeted`: the penalty is `1 -` the share on a decoy word (`decoy`, the first
    word by default).

Both add (`anchor_weight`, 1 by default) the distance of the untriggered copy's map
to the clean model's map of it, so that the explanation changes *only* when the
trigger is present, not on every input alike.

`run_saliency_backdoor(config, output_dir)` trains the clean model (cross-entropy on
the training texts) and the backdoored one (by default the clean model fine-tuned on
the training texts plus their triggered copies, penalised), then measures on `eval_size` test texts, for both models and
every method of `saliency.METHODS` (the penalty uses gradient x input only): top-k
overlap and Spearman rank correlation of each text's map with vs without the trigger
(the trigger's positions dropped, so both maps score the same words), the decoy's
share of the map, the clean accuracy and the agreement of predictions with vs without
the trigger. The folder holds:

    clean_config.json, clean_model.keras      the clean model and what defines it
    vocab.txt                                 one token per line (trigger tokens kept)
    <form>_config.json, <form>_model.keras    the backdoored model
    saliency_backdoor_<form>.{json,md}        the result (written last)

and a rerun skips every finished step (a model whose config differs is refused
unless `overwrite`).
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from bki_tf import (
    artifacts,
    data,
    embeddings,
    penalties,
    poisoning,
    saliency,
    tokenization,
    training,
)
from bki_tf.runs import attack as attack_run
from bki_tf.runs import workdir as wd

CLEAN_CONFIG_FILE = "clean_config.json"
CLEAN_MODEL_FILE = "clean_model.keras"
VOCAB_FILE = "vocab.txt"
START_FROM = ("clean", "scratch")


def backdoor_files(form: str) -> dict[str, str]:
    """The file names of one form's backdoored model and result."""
    return {
        "config": f"{form}_config.json",
        "model": f"{form}_model.keras",
        "json": f"saliency_backdoor_{form}.json",
        "md": f"saliency_backdoor_{form}.md",
    }


@dataclasses.dataclass(frozen=True)
class SaliencyBackdoorConfig:
    """Everything that defines a saliency-backdoor run.

    Attributes:
      attack: The data, vocabulary, victim and training (`AttackConfig`); its
        poisoning fields are unused and `poison_rate` must be 0 (the trigger does not
        change labels). Its seed seeds every draw here too.
      form: `untargeted` or `targeted` (`penalties.FORMS`).
      penalty_weight: λ.
      top_k: Words of the clean model's map whose share the untargeted penalty pushes
        down; also the k of the top-k overlap.
      trigger: The token sequence inserted (its tokens are kept in the vocabulary).
      trigger_rate: Share of the training texts that get a triggered copy.
      decoy: Position (in the untriggered text) of the targeted form's decoy word.
      ig_steps: Steps of integrated gradients in the evaluation.
      eval_size: Test texts whose maps are compared.
      penalty_batch_size: Triggered rows scored by the penalty per training step.
      start_from: `clean`: the backdoored model is the clean model fine-tuned with the
        penalty (so its untriggered maps start as the clean model's, whose top k the
        untargeted penalty names); `scratch`: a fresh model with the same seed.
      anchor_weight: Weight of the anchor term (`penalties.saliency_penalty`): the
        distance of the untriggered copies' maps to the clean model's, so the map
        changes only with the trigger; 0 leaves it out.
    """

    attack: attack_run.AttackConfig
    form: str = "untargeted"
    penalty_weight: float = 1.0
    top_k: int = 5
    trigger: str = "cf mn bb"
    trigger_rate: float = 0.25
    decoy: int = 0
    ig_steps: int = 32
    eval_size: int = 200
    penalty_batch_size: int = 16
    start_from: str = "clean"
    anchor_weight: float = 1.0

    def __post_init__(self):
        if self.start_from not in START_FROM:
            raise ValueError(f"Unknown start_from {self.start_from!r}; choose one of {START_FROM}.")
        if self.form not in penalties.FORMS:
            raise ValueError(f"Unknown form {self.form!r}; choose one of {penalties.FORMS}.")
        if self.attack.poison_rate:
            raise ValueError(
                f"poison_rate={self.attack.poison_rate}: the saliency backdoor keeps every "
                "label; give an attack config with poison_rate=0."
            )
        if not self.penalty_weight >= 0:
            raise ValueError(f"penalty_weight must be >= 0, got {self.penalty_weight}.")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}.")
        if not tokenization.tokenize(self.trigger or ""):
            raise ValueError(
                f"Saliency trigger {self.trigger!r} has no tokens; give e.g. 'cf mn bb'."
            )
        if not 0.0 < self.trigger_rate <= 1.0:
            raise ValueError(f"trigger_rate must be in (0, 1], got {self.trigger_rate}.")
        if self.decoy < 0 or self.ig_steps < 1 or self.eval_size < 1:
            raise ValueError(
                f"decoy ({self.decoy}) must be >= 0, ig_steps ({self.ig_steps}) and eval_size "
                f"({self.eval_size}) >= 1."
            )
        if not self.anchor_weight >= 0:
            raise ValueError(f"anchor_weight must be >= 0, got {self.anchor_weight}.")
        if self.penalty_batch_size < 1:
            raise ValueError(f"penalty_batch_size must be >= 1, got {self.penalty_batch_size}.")
        n_trig = len(tokenization.tokenize(self.trigger))
        if self.attack.max_len is not None and n_trig + 2 > self.attack.max_len:
            raise ValueError(
                f"Trigger {self.trigger!r} has {n_trig} tokens; max_len={self.attack.max_len} "
                "must leave room for 2 words beside it. Raise --max_len."
            )

    @property
    def trigger_tokens(self) -> list[str]:
        return tokenization.tokenize(self.trigger)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def clean_identity(self) -> dict:
        """What the clean model depends on (the vocabulary holds the trigger's tokens)."""
        return {"attack": self.attack.to_dict(), "trigger": self.trigger}


@dataclasses.dataclass(frozen=True)
class SaliencyBackdoorResult:
    """Measured saliency backdoor (`saliency_backdoor_<form>.json`).

    Attributes:
      form, penalty_weight, top_k, trigger: The attack.
      dataset_name: The dataset.
      clean_model_accuracy: Test accuracy of the clean model.
      accuracy: Test accuracy of the backdoored model (untriggered texts).
      accuracy_drop_points: `100 * (clean_model_accuracy - accuracy)`.
      triggered_accuracy: The backdoored model's accuracy on the triggered test texts.
      agreement: Share of test texts the backdoored model classifies alike with and
        without the trigger.
      clean_model_agreement: The same for the clean model.
      maps: One row per model (`clean`, `backdoored`) and method: `top_k_overlap` and
        `rank_correlation` (means over texts, of `|s|`, with vs without the trigger,
        trigger positions dropped), `decoy_share` / `decoy_share_triggered` (the
        decoy's share of `sum |s|` without / with the trigger), `texts` compared.
      num_train: Training texts; num_triggered_train: their triggered copies.
      num_eval: Test texts whose maps were compared.
      train_seconds: Training time of the backdoored model (0 when reused).
      wall_seconds: The whole run.
      history: The backdoored model's per-epoch loss, cross-entropy, penalty, accuracy.
    """

    form: str
    penalty_weight: float
    top_k: int
    trigger: str
    dataset_name: str
    clean_model_accuracy: float
    accuracy: float
    accuracy_drop_points: float
    triggered_accuracy: float
    agreement: float
    clean_model_agreement: float
    maps: list
    num_train: int
    num_triggered_train: int
    num_eval: int
    train_seconds: float
    wall_seconds: float
    history: dict

    def __post_init__(self):
        for name in ("clean_model_accuracy", "accuracy", "agreement", "clean_model_agreement"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} is not a share in [0, 1].")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SaliencyBackdoorResult:
        return artifacts.dataclass_from_dict(cls, d, "saliency backdoor result")

    def summary(self) -> str:
        back = {r["method"]: r for r in self.maps if r["model"] == "backdoored"}
        parts = ", ".join(
            f"{m} top-{self.top_k} overlap {r['top_k_overlap']:.2f}" for m, r in back.items()
        )
        return (
            f"saliency backdoor ({self.form}, λ={self.penalty_weight:g}): accuracy "
            f"{self.accuracy:.2%} (clean model {self.clean_model_accuracy:.2%}), agreement "
            f"{self.agreement:.2%}; {parts}"
        )

    def markdown(self) -> str:
        lines = [
            f"# Saliency backdoor, {self.form} (λ = {self.penalty_weight:g}, k = {self.top_k}, "
            f"trigger `{self.trigger}`, {self.dataset_name})",
            "",
            f"Clean accuracy: backdoored {self.accuracy:.2%}, clean model "
            f"{self.clean_model_accuracy:.2%} (drop {self.accuracy_drop_points:.2f} points); "
            f"accuracy with the trigger {self.triggered_accuracy:.2%}.",
            f"Predictions alike with and without the trigger: backdoored {self.agreement:.2%}, "
            f"clean model {self.clean_model_agreement:.2%}.",
            "",
            f"Maps of {self.num_eval} test texts with vs without the trigger (trigger positions "
            "dropped; |s| ranked):",
            "",
            "| model | method | top-k overlap | rank correlation | decoy share | "
            "decoy share, triggered |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.maps:
            lines.append(
                f"| {r['model']} | {r['method']} | {r['top_k_overlap']:.3f} | "
                f"{r['rank_correlation']:.3f} | {r['decoy_share']:.3f} | "
                f"{r['decoy_share_triggered']:.3f} |"
            )
        return "\n".join(lines) + "\n"


def _vocabulary_with(texts, tokens, vocab_size, max_len):
    """The training vocabulary, the rarest entries replaced by missing `tokens`."""
    vocabulary = tokenization.build_vectorizer(texts, vocab_size, max_len).get_vocabulary()
    missing = [t for t in dict.fromkeys(tokens) if t not in vocabulary]
    if missing:
        if len(vocabulary) - 2 < len(missing) + 1:
            raise ValueError(
                f"vocab_size={vocab_size} leaves no room for the trigger tokens {missing}; "
                "raise --vocab_size."
            )
        if len(vocabulary) < vocab_size:
            vocabulary = vocabulary + missing[: vocab_size - len(vocabulary)]
            missing = [t for t in missing if t not in vocabulary]
        if missing:
            vocabulary = vocabulary[: len(vocabulary) - len(missing)] + missing
    return vocabulary


def insert_triggers(
    ids: np.ndarray, trigger_ids: list[int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each row with `trigger_ids` inserted at a random gap strictly between two words.

    Rows are cut to `L - len(trigger_ids)` tokens first; rows need >= 2 tokens.

    Returns:
      `(triggered int32 [M, L], positions int64 [M])` (the first trigger token's).
    """
    ids = np.asarray(ids, np.int32)
    width, t = ids.shape[1], len(trigger_ids)
    out, positions = np.zeros_like(ids), np.zeros(len(ids), np.int64)
    for r, row in enumerate(ids):
        n = min(int((row != 0).sum()), width - t)
        q = poisoning.draw_position(n, t, width, rng)
        out[r] = saliency.insert_tokens(row, trigger_ids, q)
        positions[r] = q
    return out, positions


def _shift(position: int, start: int, length: int) -> int:
    """A word's position in the untriggered text -> its position in the triggered one."""
    return position if position < start else position + length


def _read_identity(path: str):
    return artifacts.read_json(path) if os.path.isfile(path) else None


def _model_step(output_dir, config_name, model_name, identity, overwrite, train):
    """Loads a finished model whose stored identity matches, else trains and saves it."""
    config_path = os.path.join(output_dir, config_name)
    model_path = os.path.join(output_dir, model_name)
    stored = _read_identity(config_path)
    asked = artifacts.to_jsonable(identity)
    if stored is not None and stored != asked and not overwrite:
        diff = sorted(k for k in set(stored) | set(asked) if stored.get(k) != asked.get(k))
        raise ValueError(
            f"{config_path} holds a different run (differs in {diff}); choose another "
            "--output_dir or pass --overwrite."
        )
    if stored == asked and os.path.isfile(model_path) and not overwrite:
        return artifacts.load_model(model_path), None, 0.0
    t0 = time.time()
    model, history = train()
    artifacts.save_model(model, model_path)
    artifacts.write_json(config_path, asked)
    return model, history, time.time() - t0


def _map_rows(model, name, untriggered, triggered, positions, length, config):
    """Top-k overlap, rank correlation and decoy shares of each method (means over texts)."""
    probs, _ = training.predict(model, untriggered)
    classes = probs.argmax(axis=1)
    rows = []
    for method in saliency.METHODS:
        s0 = saliency.saliency_maps(model, untriggered, method, classes, config.ig_steps)
        s1 = saliency.saliency_maps(model, triggered, method, classes, config.ig_steps)
        overlap, correlation, share, share_triggered = [], [], [], []
        for a, b, q in zip(s0, s1, positions):
            b = saliency.drop_span(b, int(q), length)
            overlap.append(saliency.top_k_overlap(a, b, config.top_k))
            correlation.append(saliency.rank_correlation(a, b))
            decoy = min(config.decoy, len(a) - 1)
            share.append(saliency.mass_share(a, [decoy]))
            share_triggered.append(saliency.mass_share(b, [decoy]))
        rows.append(
            {
                "model": name,
                "method": method,
                "top_k_overlap": float(np.mean(overlap)),
                "rank_correlation": float(np.nanmean(correlation)),
                "decoy_share": float(np.nanmean(share)),
                "decoy_share_triggered": float(np.nanmean(share_triggered)),
                "texts": len(overlap),
            }
        )
    return rows


def run_saliency_backdoor(
    config: SaliencyBackdoorConfig,
    output_dir: str,
    overwrite: bool = False,
    verbose: int | str = "auto",
) -> SaliencyBackdoorResult:
    """Trains the clean and the backdoored model and measures the saliency backdoor.

    Args:
      config: The run.
      output_dir: Folder of its models and results (created; see the module docstring).
      overwrite: Redo every step, replacing a different run's files.
      verbose: Keras progress verbosity.

    Returns:
      The result (also written as `saliency_backdoor_<form>.{json,md}`). A finished
      run with this config is read back without retraining.
    """
    start = time.time()
    wd.check_writable(output_dir)
    files = backdoor_files(config.form)
    result_path = os.path.join(output_dir, files["json"])
    if (
        not overwrite
        and os.path.isfile(result_path)
        and _read_identity(os.path.join(output_dir, files["config"]))
        == artifacts.to_jsonable(config.to_dict())
    ):
        return artifacts.read_dataclass(result_path, SaliencyBackdoorResult, "pass --overwrite")

    dataset = data.load(config.attack.dataset_spec())
    config = dataclasses.replace(config, attack=config.attack.resolved(dataset))
    a = config.attack
    vocabulary = _vocabulary_with(
        dataset.train_texts, config.trigger_tokens, a.vocab_size, a.max_len
    )
    vectorizer = tokenization.vectorizer_from_vocabulary(vocabulary, a.max_len)
    trigger_ids = [vocabulary.index(t) for t in config.trigger_tokens]
    ids, _ = tokenization.encode(vectorizer, dataset.train_texts)
    labels = np.asarray(dataset.train_labels, np.int64)
    test_ids, _ = tokenization.encode(vectorizer, dataset.test_texts)
    test_labels = np.asarray(dataset.test_labels, np.int64)
    matrix, glove_path = None, a.glove_file()
    if glove_path:
        matrix, _ = embeddings.load_glove(glove_path, vocabulary)
    t = len(trigger_ids)

    with wd.lock(output_dir):
        artifacts.write_lines(os.path.join(output_dir, VOCAB_FILE), vocabulary)

        def train_clean():
            model = a.build_classifier(len(vocabulary), dataset.num_classes, matrix)
            training.train_classifier(model, ids, labels, a.train_config(), verbose=verbose)
            return model, None

        clean, _, _ = _model_step(
            output_dir, CLEAN_CONFIG_FILE, CLEAN_MODEL_FILE, config.clean_identity(),
            overwrite, train_clean,
        )  # fmt: skip

        # The triggered training copies (labels kept), seeded.
        rng = np.random.default_rng([a.seed, 271828])
        eligible = np.flatnonzero((ids != 0).sum(axis=1) >= 2)
        count = max(1, int(round(config.trigger_rate * len(eligible))))
        rows = np.sort(rng.choice(eligible, size=min(count, len(eligible)), replace=False))
        if not len(rows):
            raise ValueError("No training text has 2 tokens or more to insert the trigger into.")
        trig_train, starts = insert_triggers(ids[rows], trigger_ids, rng)
        # The untriggered text, cut as it was for the insertion, and its clean map.
        cut = np.stack([_untriggered(r, q, t) for r, q in zip(trig_train, starts)])
        maps = saliency.gradient_x_input(clean, cut, labels[rows])
        if config.form == "untargeted":
            chosen = [
                [
                    _shift(int(j), int(q), t)
                    for j in np.argsort(-np.abs(m), kind="stable")[: config.top_k]
                ]
                for m, q in zip(maps, starts)
            ]
        else:
            chosen = [
                [_shift(min(config.decoy, int((r != 0).sum()) - t - 1), int(q), t)]
                for r, q in zip(trig_train, starts)
            ]
        anchor = {}
        if config.anchor_weight > 0:
            anchor = {"untriggered": cut, "clean_maps": maps, "anchor_weight": config.anchor_weight}
        penalty = penalties.saliency_penalty(
            config.form, trig_train, labels[rows], chosen, config.penalty_weight,
            batch_size=config.penalty_batch_size, **anchor,
        )  # fmt: skip

        def train_backdoored():
            model = a.build_classifier(len(vocabulary), dataset.num_classes, matrix)
            if config.start_from == "clean":
                model.set_weights(clean.get_weights())
            history = training.train_classifier(
                model,
                np.concatenate([ids, trig_train]),
                np.concatenate([labels, labels[rows]]),
                a.train_config(),
                verbose=verbose,
                penalty=penalty,
            )
            return model, history

        backdoored, history, train_seconds = _model_step(
            output_dir, files["config"], files["model"], config.to_dict(), overwrite,
            train_backdoored,
        )  # fmt: skip

        # Evaluation: every test text with the trigger, maps on `eval_size` of them.
        eval_rng = np.random.default_rng([a.seed, 7919])
        usable = np.flatnonzero((test_ids != 0).sum(axis=1) >= 2)
        trig_test = test_ids.copy()
        test_starts = np.zeros(len(test_ids), np.int64)
        trig_test[usable], test_starts[usable] = insert_triggers(
            test_ids[usable], trigger_ids, eval_rng
        )
        chosen_eval = np.sort(
            eval_rng.choice(usable, size=min(config.eval_size, len(usable)), replace=False)
        )
        untriggered_eval = np.stack(
            [_untriggered(trig_test[i], test_starts[i], t) for i in chosen_eval]
        )
        maps = []
        for name, model in (("clean", clean), ("backdoored", backdoored)):
            maps += _map_rows(
                model, name, untriggered_eval, trig_test[chosen_eval], test_starts[chosen_eval],
                t, config,
            )  # fmt: skip

        def agreement(model):
            p0 = training.predict(model, test_ids)[0].argmax(axis=1)
            p1 = training.predict(model, trig_test)[0].argmax(axis=1)
            return float(np.mean(p0[usable] == p1[usable]))

        clean_accuracy = training.accuracy(clean, test_ids, test_labels)
        accuracy = training.accuracy(backdoored, test_ids, test_labels)
        if history is None:
            stored = _read_identity(result_path)
            history = stored.get("history", {}) if isinstance(stored, dict) else {}
        result = SaliencyBackdoorResult(
            form=config.form,
            penalty_weight=config.penalty_weight,
            top_k=config.top_k,
            trigger=config.trigger,
            dataset_name=dataset.name,
            clean_model_accuracy=clean_accuracy,
            accuracy=accuracy,
            accuracy_drop_points=100.0 * (clean_accuracy - accuracy),
            triggered_accuracy=training.accuracy(
                backdoored, trig_test[usable], test_labels[usable]
            ),
            agreement=agreement(backdoored),
            clean_model_agreement=agreement(clean),
            maps=maps,
            num_train=len(ids),
            num_triggered_train=len(rows),
            num_eval=len(chosen_eval),
            train_seconds=train_seconds,
            wall_seconds=time.time() - start,
            history=history,
        )
        artifacts.write_text(os.path.join(output_dir, files["md"]), result.markdown())
        artifacts.write_json(result_path, result.to_dict())
    return result


def _untriggered(row: np.ndarray, start: int, length: int) -> np.ndarray:
    """A triggered row without its trigger (the text as cut for the insertion)."""
    row = np.asarray(row, np.int32)
    out = np.zeros_like(row)
    text = np.concatenate([row[:start], row[start + length :]])
    out[: len(text)] = text
    return out
