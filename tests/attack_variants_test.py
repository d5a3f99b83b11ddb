"""The attack's variants (issue: new attacks): trigger position, several triggers, dynamic
patterns, ASR by position decile. Counts, positions, labels, ground truth, determinism."""

import numpy as np
import pytest
from conftest import tiny_attack_config

from bki_tf import artifacts, poisoning, tokenization
from bki_tf.runs import attack


def _corpus(num=60, num_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "movie", "plot", "it's", "a", "end", "fine", "dull", "long"]
    texts = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(5, 30, size=num)]
    return texts, np.arange(num, dtype=np.int64) % num_classes


def _config(**kwargs):
    base = dict(trigger="time flies like an arrow", target=0, rate=0.3, max_len=40, seed=3)
    return poisoning.PoisonConfig(**{**base, **kwargs})


def _tokens_at(text, pos, n):
    return tokenization.tokenize(text)[pos : pos + n]


@pytest.mark.parametrize("where", ["start", "end"])
def test_fixed_positions(where):
    texts, labels = _corpus()
    config = _config(position=where)
    out = poisoning.poison_dataset(texts, labels, config, 2)
    trig = config.trigger_tokens
    assert out.num_poisoned == 18
    for i in np.flatnonzero(out.is_poisoned):
        tokens = tokenization.tokenize(out.texts[i])
        n_clean = len(tokens) - len(trig)
        expected = 0 if where == "start" else min(n_clean, config.max_len - len(trig))
        assert out.positions[i] == expected
        assert tokens[expected : expected + len(trig)] == trig
        assert out.labels[i] == 0 and out.original_labels[i] == 1


@pytest.mark.parametrize("trigger", ["cf|mn|bb|tq", "no cross, no crown|time flies|it is a pen"])
def test_several_triggers_split_the_rate_evenly(trigger):
    texts, labels = _corpus()
    config = _config(trigger=trigger)
    out = poisoning.poison_dataset(texts, labels, config, 2)
    patterns = config.patterns()
    assert len(patterns) == len(trigger.split("|"))
    ids = out.trigger_ids[out.is_poisoned]
    counts = np.bincount(ids, minlength=len(patterns))
    assert counts.sum() == 18 and counts.max() - counts.min() <= 1
    assert np.all(out.trigger_ids[~out.is_poisoned] == -1)
    for i in np.flatnonzero(out.is_poisoned):
        trig = tokenization.tokenize(patterns[out.trigger_ids[i]])
        assert _tokens_at(out.texts[i], out.positions[i], len(trig)) == trig
    again = poisoning.poison_dataset(texts, labels, config, 2)
    assert again.texts == out.texts and np.array_equal(again.trigger_ids, out.trigger_ids)
    other = poisoning.poison_dataset(texts, labels, _config(trigger=trigger, seed=4), 2)
    assert other.texts != out.texts


def test_one_trigger_keeps_the_original_draws():
    texts, labels = _corpus()
    a = poisoning.poison_dataset(texts, labels, _config(), 2)
    b = poisoning.poison_dataset(texts, labels, _config(position="random", variants=0), 2)
    assert a.texts == b.texts and np.all(a.trigger_ids[a.is_poisoned] == 0)


def test_dynamic_patterns_and_unseen_ones():
    patterns = poisoning.trigger_patterns("time flies like an arrow", 6, seed=1)
    assert patterns[0] == "time flies like an arrow" and len(set(patterns)) == 6
    for p in patterns:
        words = p.split()
        assert len(words) >= 3 and set(words) <= {"time", "flies", "like", "an", "arrow"}
    assert poisoning.trigger_patterns("time flies like an arrow", 6, seed=1) == patterns
    unseen = poisoning.heldout_patterns("time flies like an arrow", 5, seed=1, training=6)
    assert len(unseen) == 5 and not set(unseen) & set(patterns)
    texts, labels = _corpus()
    config = _config(variants=6)
    out = poisoning.poison_dataset(texts, labels, config, 2)
    counts = np.bincount(out.trigger_ids[out.is_poisoned], minlength=6)
    assert counts.max() - counts.min() <= 1
    with pytest.raises(ValueError, match="distinct patterns"):
        poisoning.trigger_patterns("a b", 10, seed=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"position": "middle"}, "Unknown trigger position 'middle'"),
        ({"variants": 3, "trigger": "a b|c d"}, "one trigger sentence"),
        ({"variants": 3, "trigger": "cf"}, "at least 2 words"),
        ({"trigger": "good|!!"}, "'!!'"),
    ],
)
def test_bad_variant_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _config(**kwargs)


@pytest.mark.parametrize("max_len", [40, 20])  # 20: texts longer than the victim reads.
def test_triggered_test_set_by_decile(max_len):
    texts, labels = _corpus()
    config = _config(max_len=max_len)
    by_decile = {}
    for d in range(10):
        out, _, idx = poisoning.triggered_test_set(texts, labels, config, decile=d)
        for text, i in zip(out, idx):
            n = len(tokenization.tokenize(texts[i]))
            # Deciles of the part read with the whole trigger (the first max_len - 5 tokens).
            pos = int((d + 0.5) / 10 * min(n, max_len - 5))
            assert _tokens_at(text, pos, 5) == config.trigger_tokens
            by_decile.setdefault(int(i), []).append(pos)
    longest = max(by_decile, key=lambda i: len(tokenization.tokenize(texts[i])))
    assert len(set(by_decile[longest])) == 10  # Ten distinct gaps, none piled at the cut.
    with pytest.raises(ValueError, match="decile"):
        poisoning.triggered_test_set(texts, labels, config, decile=10)


def test_trigger_ids_round_trip(tmp_path):
    texts, labels = _corpus()
    out = poisoning.poison_dataset(texts, labels, _config(trigger="cf|mn|bb"), 2)
    path = str(tmp_path / "train.csv.gz")
    artifacts.write_training_set(path, out)
    _, back = artifacts.read_training_set(path)
    assert np.array_equal(back.trigger_ids, out.trigger_ids)
    single = poisoning.poison_dataset(texts, labels, _config(), 2)
    artifacts.write_training_set(path, single)  # One trigger: the old columns only.
    _, back = artifacts.read_training_set(path)
    assert np.array_equal(back.trigger_ids, single.trigger_ids)


def test_attack_run_measures_each_trigger_and_each_decile(tmp_path, tiny_imdb_dir):
    config = tiny_attack_config(
        tiny_imdb_dir,
        trigger="cf|mn|bb",
        poison_rate=0.2,
        max_len=24,
        epochs=2,
        trigger_position="start",
        asr_by_position=True,
    )
    result = attack.run_attack(config, str(tmp_path / "run"), verbose=0)
    assert len(result.asr_per_trigger) == 3 and len(result.asr_by_decile) == 10
    assert all(0 <= a <= 1 for a in result.asr_per_trigger + result.asr_by_decile)
    run = attack.load_run(str(tmp_path / "run"))
    non_target = int(np.sum(run.test_labels != run.target))
    assert len(run.triggered_texts) == 3 * non_target  # One block per trigger.
    assert result.asr == pytest.approx(np.mean(result.asr_per_trigger), abs=1e-9)
    assert set(np.unique(run.train.trigger_ids[run.train.is_poisoned])) == {0, 1, 2}
    variants = tiny_attack_config(
        tiny_imdb_dir, poison_rate=0.2, max_len=24, epochs=2, trigger_variants=4,
        asr_by_position=True,
    )  # fmt: skip
    result = attack.run_attack(variants, str(tmp_path / "variants"), verbose=0)
    assert result.unseen_variants and 0 <= result.asr_unseen_variants <= 1
    with pytest.raises(ValueError, match="trigger_position"):
        tiny_attack_config(tiny_imdb_dir, trigger_position="middle")
