"""Tests for bki_tf.penalties and penalised training: literal references, λ = 0, seeds."""

import functools

import numpy as np
import tensorflow as tf

from bki_tf import models, penalties, saliency, training

VOCAB = 30


def _tiny(seed=0):
    return models.build_classifier(
        VOCAB, 2, embedding_dim=8, lstm_units=4, dense_units=4, seed=seed
    )


def _problem(num=24, max_len=8, seed=0):
    """Alternating labels; class c texts draw ids from [2 + 8c, 10 + 8c)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num) % 2
    ids = np.zeros((num, max_len), np.int32)
    for r in range(num):
        n = int(rng.integers(3, max_len + 1))
        ids[r, :n] = rng.integers(2, 10, size=n) + 8 * labels[r]
    return ids, labels


def _literal_change(model, row, position):
    """||h(x) - h(x without word `position`)||_inf, each text run unpadded."""
    text = list(row[row != 0])
    h = model(tf.constant([text]))[1].numpy()[0]
    shorter = text[:position] + text[position + 1 :]
    hv = model(tf.constant([shorter]))[1].numpy()[0]
    return float(np.abs(h - hv).max())


class AntiBkiTest(tf.test.TestCase):
    def test_delete_positions_shortens_each_text(self):
        ids = tf.constant([[5, 6, 7, 0], [8, 9, 0, 0]])
        out = penalties.delete_positions(ids, tf.constant([[0, 2], [1, 0]]))
        self.assertAllEqual(out, [[[6, 7, 0, 0], [5, 6, 0, 0]], [[8, 0, 0, 0], [9, 0, 0, 0]]])

    def test_trigger_positions(self):
        ids = np.array([[3, 4, 5, 6, 7, 0], [3, 4, 5, 0, 0, 0]], np.int32)
        positions = penalties.trigger_token_positions([1, 1], [3, 2], ids)
        self.assertAllEqual(positions, [[1, 2, 3], [1, 2, -1]])
        cut = penalties.trigger_token_positions([2], [3], ids[1:])  # Past the text: dropped.
        self.assertAllEqual(cut, [[2, -1, -1]])

    def test_changes_and_term_match_one_deletion_at_a_time(self):
        model = _tiny(seed=4)
        ids, _ = _problem(5, seed=4)
        starts = np.array([0, 1, 1, 0, 1])
        lengths = np.array([2, 2, 1, 2, 2])
        penalty = penalties.anti_bki_penalty(ids, starts, lengths, weight=1.0)
        (positions,) = penalty.extra
        changes = penalties.trigger_deletion_changes(model, ids, positions).numpy()
        per_row = []
        for r in range(len(ids)):
            literal = [_literal_change(model, ids[r], p) for p in positions[r] if p >= 0]
            self.assertAllClose(changes[r, : len(literal)], literal, atol=1e-5)
            self.assertAllEqual(changes[r, len(literal) :], np.zeros(2 - len(literal)))
            per_row.append(max(literal))
        term = penalty.make_term(model)(tf.constant(ids), tf.constant(positions))
        self.assertAllClose(term, np.mean(per_row), atol=1e-5)
        self.assertGreater(np.mean(per_row), 1e-4)  # Not vacuous.
        # The hinge: only the part above the margin counts (here some rows fall below it).
        margin = float(np.median(per_row))
        hinged = penalties.anti_bki_penalty(ids, starts, lengths, weight=1.0, margin=margin)
        term = hinged.make_term(model)(tf.constant(ids), tf.constant(positions))
        expected = np.mean(np.maximum(0.0, np.asarray(per_row) - margin))
        self.assertAllClose(term, expected, atol=1e-5)
        self.assertGreater(expected, 0.0)
        with self.assertRaisesRegex(ValueError, "margin must be >= 0"):
            penalties.anti_bki_penalty(ids, starts, lengths, weight=1.0, margin=-0.1)


class SaliencyPenaltyTest(tf.test.TestCase):
    def test_share_matches_the_maps_and_has_second_derivatives(self):
        model = _tiny(seed=5)
        ids, labels = _problem(4, seed=5)
        chosen = [[0, 2], [1], [0], [3, 1]]
        for form in penalties.FORMS:
            penalty = penalties.saliency_penalty(form, ids, labels, chosen, weight=1.0)
            term = penalty.make_term(model)
            maps = saliency.gradient_x_input(model, ids, labels)
            shares = [np.abs(m)[c].sum() / np.abs(m).sum() for m, c in zip(maps, chosen)]
            expected = np.mean(shares) if form == "untargeted" else 1 - np.mean(shares)
            classes, weights = penalty.extra
            with tf.GradientTape() as tape:
                value = term(tf.constant(ids), tf.constant(classes), tf.constant(weights))
            self.assertAllClose(value, expected, atol=1e-5)
            grads = tape.gradient(value, model.trainable_variables)
            lstm = [g for g, v in zip(grads, model.trainable_variables) if "lstm" in v.path]
            self.assertTrue(lstm and all(g is not None for g in lstm))
            self.assertGreater(sum(float(tf.norm(g)) for g in lstm), 0.0)

    def test_anchor_matches_the_total_variation_to_the_clean_maps(self):
        model, clean = _tiny(seed=5), _tiny(seed=6)
        ids, labels = _problem(4, seed=5)
        untriggered, _ = _problem(4, seed=7)
        chosen = [[0, 2], [1], [0], [3, 1]]
        clean_maps = saliency.gradient_x_input(clean, untriggered, labels)
        maps = saliency.gradient_x_input(model, ids, labels)
        maps_u = saliency.gradient_x_input(model, untriggered, labels)

        def normalised(m):  # A map of zeros (a dead ReLU layer) stays zeros.
            total = np.abs(m).sum()
            return np.abs(m) / total if total > 0 else np.zeros_like(m)

        tv = [0.5 * np.abs(normalised(m) - normalised(c)).sum() for m, c in zip(maps_u, clean_maps)]
        self.assertGreater(np.mean(tv), 1e-3)  # Two different models: not vacuous.
        for form in penalties.FORMS:
            shares = [np.abs(m)[c].sum() / np.abs(m).sum() for m, c in zip(maps, chosen)]
            main = np.mean(shares) if form == "untargeted" else 1 - np.mean(shares)
            penalty = penalties.saliency_penalty(
                form, ids, labels, chosen, 1.0, untriggered=untriggered,
                clean_maps=clean_maps, anchor_weight=2.0,
            )  # fmt: skip
            self.assertEqual(penalty.name, f"saliency_{form}_anchored")
            term = penalty.make_term(model)
            with tf.GradientTape() as tape:
                value = term(*(tf.constant(a) for a in (penalty.ids, *penalty.extra)))
            self.assertAllClose(value, main + 2.0 * np.mean(tv), atol=1e-5)
            grads = tape.gradient(value, model.trainable_variables)
            self.assertTrue(all(g is not None for g in grads))
        # The clean model itself is at distance 0 from its own maps.
        penalty = penalties.saliency_penalty(
            "untargeted", ids, labels, chosen, 1.0, untriggered=untriggered,
            clean_maps=clean_maps,
        )  # fmt: skip
        (classes, weights, u, c) = penalty.extra
        view = saliency.embedding_view(clean)
        embedding = clean.get_layer("embedding")
        distance = penalties.anchor_distance(view, embedding, tf.constant(u), classes, c)
        self.assertAllClose(distance, 0.0, atol=1e-5)
        with self.assertRaisesRegex(ValueError, "needs both"):
            penalties.saliency_penalty("targeted", ids, labels, chosen, 1.0, untriggered=ids)


@functools.cache
def _trained(weight, run=0):
    """A tiny model trained with the anti-BKI penalty at `weight` (None: plain training).

    Cached: each test reads the trainings it compares; `run` asks for another one.
    """
    del run
    ids, labels = _problem(seed=1)
    config = training.TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2, seed=0)
    penalty = None
    if weight is not None:
        penalty = penalties.anti_bki_penalty(
            ids[:6], np.ones(6), np.full(6, 2), weight, batch_size=4
        )
    model = _tiny(seed=0)
    history = training.train_classifier(model, ids, labels, config, verbose=0, penalty=penalty)
    return model.get_weights(), history


class PenalisedTrainingTest(tf.test.TestCase):
    def test_zero_weight_is_plain_training(self):
        plain, plain_history = _trained(None)
        weights, history = _trained(0.0)
        for a, b in zip(plain, weights):
            self.assertAllClose(a, b, atol=1e-6)
        self.assertAllClose(history["loss"], plain_history["loss"], atol=1e-6)
        self.assertAllClose(history["cross_entropy"], plain_history["loss"], atol=1e-6)

    def test_same_seed_same_weights_and_the_penalty_matters(self):
        first, history = _trained(1.0)
        second, again = _trained(1.0, run=1)
        # Bit-identical: the penalty's rows do not depend on how far tf.data prefetched.
        for a, b in zip(first, second):
            self.assertAllEqual(a, b)
        self.assertEqual(history, again)
        self.assertLen(history["penalty"], 2)
        unpenalised, _ = _trained(0.0)
        self.assertGreater(max(np.abs(a - b).max() for a, b in zip(first, unpenalised)), 1e-4)

    def test_bad_penalties(self):
        ids = np.ones((2, 3), np.int32)
        with self.assertRaisesRegex(ValueError, "weight must be >= 0, got -1"):
            penalties.anti_bki_penalty(ids, [0, 0], [1, 1], -1.0)
        with self.assertRaisesRegex(ValueError, "has no rows"):
            penalties.anti_bki_penalty(ids[:0], [], [], 1.0)
        with self.assertRaisesRegex(ValueError, "Unknown saliency backdoor form 'sideways'"):
            penalties.saliency_penalty("sideways", ids, [0, 0], [[0], [0]], 1.0)


if __name__ == "__main__":
    tf.test.main()
