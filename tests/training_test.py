"""Tests for bki_tf.training: bucketed batches, ordered prediction, a tiny training run."""

import math

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from bki_tf import models, training

VOCAB = 30


def _ids(num, max_len, seed=0):
    """Right-padded ids whose first token is the row number + 2, so rows can be traced."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len + 1, size=num)
    lengths[0] = max_len  # at least one full row
    ids = np.zeros((num, max_len), np.int32)
    for r, n in enumerate(lengths):
        ids[r, :n] = rng.integers(2, VOCAB, size=n)
    return ids, lengths


def _tiny(seed=0):
    return models.build_classifier(
        VOCAB, 2, embedding_dim=8, lstm_units=4, dense_units=4, seed=seed
    )


class MakeDatasetTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters(
        dict(shuffle=False, batch_size=4),
        dict(shuffle=True, batch_size=4),
        dict(shuffle=True, batch_size=64),
    )
    def test_batches_padded_to_own_longest_and_cover_each_row_once(self, shuffle, batch_size):
        num, max_len = 37, 40
        ids, lengths = _ids(num, max_len)
        labels = np.arange(num, dtype=np.int64)  # label = row number
        ds = training.make_dataset(ids, labels, batch_size, shuffle=shuffle, seed=3)
        for _ in range(2):  # Two epochs: each covers every row exactly once.
            seen = []
            for x, y in ds:
                x, y = x.numpy(), y.numpy()
                self.assertEqual(x.dtype, np.int32)
                self.assertLessEqual(len(y), batch_size)
                self.assertEqual(x.shape[1], max(lengths[y]))  # padded to its longest text
                for row, r in zip(x, y):
                    self.assertAllEqual(row, ids[r, : x.shape[1]])
                seen += y.tolist()
            self.assertCountEqual(seen, range(num))

    def test_seeded_shuffle_is_reproducible(self):
        ids, _ = _ids(20, 16)
        labels = np.arange(20)
        order = lambda seed: [  # noqa: E731
            y.numpy().tolist() for _, y in training.make_dataset(ids, labels, 4, True, seed)
        ]
        self.assertEqual(order(1), order(1))
        self.assertNotEqual(order(1), order(2))

    def test_without_labels_yields_plain_id_batches(self):
        ids, lengths = _ids(10, 12)
        batches = list(training.make_dataset(ids, None, batch_size=3))
        self.assertTrue(all(isinstance(b, tf.Tensor) for b in batches))
        self.assertEqual(sum(b.shape[0] for b in batches), 10)
        firsts = sorted(int(v) for b in batches for v in b.numpy()[:, 0])
        self.assertEqual(firsts, sorted(ids[:, 0].tolist()))


class PredictTest(tf.test.TestCase):
    def test_rows_in_input_order_equal_full_padding(self):
        model = _tiny(seed=1)
        ids, _ = _ids(23, 15, seed=4)
        probs, hidden = training.predict(model, ids, batch_size=4)
        ref_probs, ref_hidden = model(tf.constant(ids))  # padded to max_len, in order
        self.assertEqual(probs.shape, (23, 2))
        self.assertEqual(hidden.shape, (23, 8))
        self.assertAllClose(probs, ref_probs, atol=1e-5)
        self.assertAllClose(hidden, ref_hidden, atol=1e-5)
        # Reusing the compiled predictor (another batch size, a subset) stays exact.
        p2, _ = training.predict(model, ids[::-1], batch_size=7)
        self.assertAllClose(p2, ref_probs.numpy()[::-1], atol=1e-5)

    def test_accuracy_and_asr_match_argmax(self):
        model = _tiny(seed=2)
        ids, _ = _ids(16, 10, seed=5)
        predicted = np.argmax(model(tf.constant(ids))[0].numpy(), axis=1)
        labels = np.where(np.arange(16) % 3 == 0, 1 - predicted, predicted)
        self.assertAlmostEqual(training.accuracy(model, ids, labels), 10 / 16)
        self.assertAlmostEqual(
            training.attack_success_rate(model, ids, 1), float(np.mean(predicted == 1))
        )

    def test_empty_inputs(self):
        model = _tiny()
        empty = np.zeros((0, 5), np.int32)
        probs, hidden = training.predict(model, empty)
        self.assertEqual(len(probs), 0)
        self.assertEqual(len(hidden), 0)
        self.assertTrue(math.isnan(training.accuracy(model, empty, np.zeros(0))))
        self.assertTrue(math.isnan(training.attack_success_rate(model, empty, 0)))


def _two_class_problem(num, words, shift, seed, max_len=8):
    """Alternating labels; class c texts draw ids from `[2 + c shift, 2 + c shift + words)`."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num) % 2
    ids = np.zeros((num, max_len), np.int32)
    for r in range(num):
        n = int(rng.integers(2, max_len + 1))
        ids[r, :n] = rng.integers(2, 2 + words, size=n) + shift * labels[r]
    return ids, labels


class TrainClassifierTest(tf.test.TestCase, parameterized.TestCase):
    def test_loss_falls_on_separable_problem(self):
        # Class 0 texts use ids 2..9, class 1 texts ids 10..17; lengths vary.
        ids, labels = _two_class_problem(32, words=8, shift=8, seed=0)
        model = _tiny(seed=0)
        before = training.accuracy(model, ids, labels)
        config = training.TrainConfig(epochs=8, batch_size=8, learning_rate=2e-2, seed=0)
        history = training.train_classifier(model, ids, labels, config, verbose=0)
        self.assertLen(history["loss"], 8)
        self.assertIn("accuracy", history)
        self.assertLess(history["loss"][-1], 0.5 * history["loss"][0])
        after = training.accuracy(model, ids, labels)
        self.assertGreaterEqual(after, 0.9)
        self.assertGreaterEqual(after, before)

    def test_validation_split_keeps_the_best_held_out_epoch(self):
        # Class 0 texts use ids 2..11, class 1 texts ids 8..17: the classes overlap.
        ids, labels = _two_class_problem(40, words=10, shift=6, seed=1)
        ids_before, labels_before = ids.copy(), labels.copy()
        config = training.TrainConfig(
            epochs=6, batch_size=8, learning_rate=5e-2, validation_split=0.25, seed=3
        )
        model = _tiny(seed=1)
        history = training.train_classifier(model, ids, labels, config, verbose=0)
        self.assertLen(history["val_accuracy"], 6)
        best = int(np.argmax(history["val_accuracy"]))  # The first maximum.
        self.assertEqual(history["best_epoch"], [best + 1])
        _, held_out = training.validation_rows(labels, 0.25, seed=3)
        self.assertLen(held_out, 10)
        self.assertAllClose(
            training.accuracy(model, ids[held_out], labels[held_out]),
            history["val_accuracy"][best],
            atol=1e-6,
        )
        self.assertAllEqual(ids, ids_before)
        self.assertAllEqual(labels, labels_before)

    def test_validation_rows_are_stratified_seeded_and_disjoint(self):
        labels = np.array([0] * 30 + [1] * 10 + [2] * 3)
        train, held_out = training.validation_rows(labels, 0.2, seed=7)
        self.assertEqual(np.bincount(labels[held_out]).tolist(), [6, 2, 1])
        self.assertAllEqual(np.sort(np.concatenate([train, held_out])), np.arange(len(labels)))
        again = training.validation_rows(labels, 0.2, seed=7)
        self.assertAllEqual(again[1], held_out)
        self.assertNotAllEqual(training.validation_rows(labels, 0.2, seed=8)[1], held_out)

    def test_validation_split_needs_rows_on_both_sides(self):
        config = training.TrainConfig(epochs=1, validation_split=0.1)
        with self.assertRaisesRegex(ValueError, "validation_split=0.1 of 4 texts leaves 4"):
            training.train_classifier(_tiny(), np.ones((4, 3), np.int32), np.arange(4) % 2, config)

    def test_empty_or_mismatched_training_set(self):
        config = training.TrainConfig(epochs=1)
        with self.assertRaisesRegex(ValueError, "empty"):
            training.train_classifier(_tiny(), np.zeros((0, 4), np.int32), np.zeros(0), config)
        with self.assertRaisesRegex(ValueError, "3 texts but 2 labels"):
            training.train_classifier(_tiny(), np.ones((3, 4), np.int32), np.zeros(2), config)

    @parameterized.named_parameters(
        ("epochs", dict(epochs=0), "epochs"),
        ("batch_size", dict(batch_size=0), "batch_size"),
        ("learning_rate", dict(learning_rate=0.0), "learning_rate"),
        ("learning_rate_nan", dict(learning_rate=float("nan")), "learning_rate"),
        ("optimizer", dict(optimizer="adagrad"), "Unknown optimizer 'adagrad'"),
        ("clipnorm", dict(clipnorm=-1.0), "clipnorm"),
        ("validation_split", dict(validation_split=1.0), r"validation_split must be in \[0, 1\)"),
    )
    def test_bad_config(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            training.TrainConfig(**kwargs)


if __name__ == "__main__":
    tf.test.main()
