"""The saliency-backdoor binary end to end on tiny data, and the anti-BKI attack option."""

import json
import os

import numpy as np
import pytest
from absl.testing import flagsaver
from conftest import tiny_attack_config

from bki_tf import artifacts, penalties, poisoning, saliency, tokenization, training
from bki_tf.runs import attack
from bki_tf.runs import saliency_backdoor as sb
from experiments import saliency_backdoor as sb_main

TINY_FLAGS = dict(
    dataset="imdb",
    glove="none",
    train_size=16,
    test_size=8,
    vocab_size=60,
    max_len=16,
    epochs=1,
    batch_size=8,
    embedding_dim=8,
    lstm_units=4,
    dense_units=4,
    seed=1,
    form="targeted",
    penalty_weight=2.0,
    top_k=2,
    saliency_trigger="cf mn",
    eval_size=6,
    ig_steps=4,
)


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory, tiny_imdb_dir):
    out = str(tmp_path_factory.mktemp("saliency") / "out")
    with flagsaver.flagsaver(data_dir=tiny_imdb_dir, output_dir=out, **TINY_FLAGS):
        sb_main.main(["saliency_backdoor"])
    return out


def test_binary_writes_models_and_results(binary_run):
    files = sb.backdoor_files("targeted")
    for name in (sb.CLEAN_MODEL_FILE, sb.CLEAN_CONFIG_FILE, sb.VOCAB_FILE, *files.values()):
        assert os.path.isfile(os.path.join(binary_run, name)), name
    with open(os.path.join(binary_run, files["json"])) as f:
        result = sb.SaliencyBackdoorResult.from_dict(json.load(f))
    assert (result.form, result.penalty_weight, result.top_k) == ("targeted", 2.0, 2)
    assert result.num_train == 32 and result.num_triggered_train == 8  # 25 % of 32.
    assert result.num_eval == 6
    assert [(r["model"], r["method"]) for r in result.maps] == [
        (m, method) for m in ("clean", "backdoored") for method in saliency.METHODS
    ]
    for r in result.maps:
        assert 0.0 <= r["top_k_overlap"] <= 1.0 and r["texts"] == 6
        assert -1.0 <= r["rank_correlation"] <= 1.0
    assert all(0.0 <= p <= 1.0 for p in result.history["penalty"])
    assert result.accuracy_drop_points == pytest.approx(
        100 * (result.clean_model_accuracy - result.accuracy)
    )
    assert "| backdoored | deletion |" in open(os.path.join(binary_run, files["md"])).read()
    vocabulary = artifacts.read_lines(os.path.join(binary_run, sb.VOCAB_FILE))
    assert len(vocabulary) <= 60 and {"cf", "mn"} <= set(vocabulary)


def test_rerun_skips_every_finished_step(binary_run, tiny_imdb_dir, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a finished step trained again")

    monkeypatch.setattr(training, "train_classifier", no_training)
    before = artifacts.read_json(os.path.join(binary_run, sb.backdoor_files("targeted")["json"]))
    with flagsaver.flagsaver(data_dir=tiny_imdb_dir, output_dir=binary_run, **TINY_FLAGS):
        sb_main.main(["saliency_backdoor"])
    after = artifacts.read_json(os.path.join(binary_run, sb.backdoor_files("targeted")["json"]))
    assert after == before
    # A different clean model asked for in the same folder is refused.
    changed = {**TINY_FLAGS, "lstm_units": 5}
    with flagsaver.flagsaver(data_dir=tiny_imdb_dir, output_dir=binary_run, **changed):
        with pytest.raises(ValueError, match="holds a different run"):
            sb_main.main(["saliency_backdoor"])


def test_insert_triggers_keeps_the_text_around_the_trigger():
    ids = np.array([[5, 6, 7, 8, 0, 0], [5, 6, 7, 8, 9, 10]], np.int32)
    out, starts = sb.insert_triggers(ids, [2, 3], np.random.default_rng(0))
    for row, trig, q in zip(ids, out, starts):
        assert 1 <= q and list(trig[q : q + 2]) == [2, 3]
        text = list(row[row != 0][: 6 - 2])
        assert list(np.delete(trig, [q, q + 1])[: len(text)]) == text


def test_config_errors(tiny_imdb_dir):
    base = tiny_attack_config(tiny_imdb_dir, poison_rate=0.0)
    with pytest.raises(ValueError, match="Unknown form 'sideways'"):
        sb.SaliencyBackdoorConfig(attack=base, form="sideways")
    with pytest.raises(ValueError, match="poison_rate=0.1"):
        sb.SaliencyBackdoorConfig(attack=tiny_attack_config(tiny_imdb_dir))
    with pytest.raises(ValueError, match="trigger_rate"):
        sb.SaliencyBackdoorConfig(attack=base, trigger_rate=0.0)


# The anti-BKI attack (AttackConfig.anti_bki_weight).


def test_anti_bki_penalty_locates_every_trigger_word(tiny_imdb_dir):
    from bki_tf import data  # pylint: disable=import-outside-toplevel

    config = tiny_attack_config(tiny_imdb_dir, anti_bki_weight=1.0, max_len=24, mode="append")
    dataset = data.load(config.dataset_spec())
    poison_cfg = poisoning.PoisonConfig(
        trigger=config.trigger, target=0, rate=config.poison_rate, mode=config.mode,
        max_len=config.max_len, seed=config.seed,
    )  # fmt: skip
    poisoned = poisoning.poison_dataset(dataset.train_texts, dataset.train_labels, poison_cfg, 2)
    vectorizer = tokenization.build_vectorizer(poisoned.texts, 60, config.max_len)
    ids, _ = tokenization.encode(vectorizer, poisoned.texts)
    penalty = attack.anti_bki_penalty(config, poison_cfg, poisoned, ids)
    assert penalty.ids.shape[0] == poisoned.num_poisoned > 0
    (positions,) = penalty.extra
    vocabulary = vectorizer.get_vocabulary()
    for row, pos in zip(penalty.ids, positions):
        assert [vocabulary[row[p]] for p in pos] == tokenization.tokenize(config.trigger)
    assert (
        attack.anti_bki_penalty(tiny_attack_config(tiny_imdb_dir), poison_cfg, poisoned, ids)
        is None
    )


def test_anti_bki_run_and_old_configs(tmp_path, tiny_imdb_dir):
    config = tiny_attack_config(tiny_imdb_dir, anti_bki_weight=0.5)
    result = attack.run_attack(config, str(tmp_path / "run"), verbose=0)
    assert len(result.history["penalty"]) == config.epochs
    assert 0.0 <= result.asr <= 1.0
    stored = artifacts.read_json(os.path.join(tmp_path, "run", "config.json"))
    assert stored["anti_bki_weight"] == 0.5
    # A config written before the field existed is the plain attack.
    plain = tiny_attack_config(tiny_imdb_dir).to_dict()
    del plain["anti_bki_weight"], plain["anti_bki_margin"]
    os.makedirs(tmp_path / "old")
    artifacts.write_json(os.path.join(tmp_path, "old", "config.json"), plain)
    assert attack.check_workdir(
        str(tmp_path / "old"), tiny_attack_config(tiny_imdb_dir).to_dict(), False
    )
    # Cache keys leave out added fields at their defaults, keep them otherwise.
    identity = attack.config_identity(tiny_attack_config(tiny_imdb_dir))
    assert "anti_bki_margin" not in identity and "anti_bki_weight" not in identity
    assert identity["trigger"] == tiny_attack_config(tiny_imdb_dir).trigger
    assert attack.config_identity(config)["anti_bki_weight"] == 0.5
    with pytest.raises(ValueError, match="anti_bki_weight must be >= 0"):
        tiny_attack_config(tiny_imdb_dir, anti_bki_weight=-1.0)
    with pytest.raises(ValueError, match="anti_bki_margin must be >= 0, got -0.5"):
        tiny_attack_config(tiny_imdb_dir, anti_bki_weight=1.0, anti_bki_margin=-0.5)
    with pytest.raises(ValueError, match="poison_rate is 0"):
        tiny_attack_config(tiny_imdb_dir, anti_bki_weight=1.0, poison_rate=0.0)
    assert isinstance(penalties.FORMS, tuple)
