"""Tests for bki_tf.saliency: maps against finite differences, completeness, literal loops."""

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from bki_tf import models, saliency

VOCAB, DIM = 40, 6


def _model(architecture="bilstm", seed=0, scale=1.0):
    # Larger embeddings than the default init, so that saliencies are well above round-off.
    table = np.random.default_rng(seed).normal(0, scale, (VOCAB, DIM)).astype(np.float32)
    return models.build_classifier(
        VOCAB, 3, embedding_matrix=table, trainable_embeddings=True, lstm_units=5,
        dense_units=6, seed=seed, architecture=architecture,
    )  # fmt: skip


def _ids(seed=0, rows=5, width=9):
    """Right-padded rows of distinct tokens (a token's table row is one position's)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((rows, width), np.int32)
    for r in range(rows):
        n = int(rng.integers(2, width + 1)) if r else width
        ids[r, :n] = rng.choice(np.arange(2, VOCAB), size=n, replace=False)
    return ids


def _probability(model, ids, c):
    return float(model(tf.constant(ids[None]))[0][0, c])


class EmbeddingViewTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters("bilstm", "lstm", "gru", "stacked_bilstm", "bilstm_gap")
    def test_equals_the_model_on_padded_batches(self, architecture):
        model = _model(architecture)
        ids = _ids()
        view = saliency.embedding_view(model)
        probs, hidden = view(model.get_layer("embedding")(ids), tf.not_equal(ids, 0))
        ref_probs, ref_hidden = model(tf.constant(ids))
        self.assertAllClose(probs, ref_probs, atol=1e-6)
        self.assertAllClose(hidden, ref_hidden, atol=1e-6)


class MapsTest(tf.test.TestCase):
    def test_gradient_x_input_matches_finite_differences(self):
        model = _model(seed=1)
        ids = _ids(seed=1, rows=2, width=6)
        classes = np.array([0, 2])
        maps = saliency.gradient_x_input(model, ids, classes)
        embedding = model.get_layer("embedding")
        table = embedding.get_weights()[0]
        eps = 1e-2
        for r, row in enumerate(ids):
            n = int((row != 0).sum())
            self.assertLen(maps[r], n)
            text = row[:n]
            reference = []
            for token in text:
                # d/de p_c((1 + e) x_j) at 0 = sum_d grad_jd x_jd (token distinct in the text).
                values = []
                for sign in (1, -1):
                    scaled = table.copy()
                    scaled[token] *= 1 + sign * eps
                    embedding.set_weights([scaled])
                    values.append(_probability(model, text, classes[r]))
                embedding.set_weights([table])
                reference.append((values[0] - values[1]) / (2 * eps))
            self.assertAllClose(maps[r], reference, atol=2e-4, rtol=2e-2)
            self.assertGreater(np.abs(reference).max(), 1e-3)  # Not vacuous.

    def test_integrated_gradients_are_complete(self):
        model = _model(seed=2)
        ids = _ids(seed=2, rows=4)
        probs = model(tf.constant(ids))[0].numpy()
        classes = probs.argmax(axis=1)
        maps = saliency.integrated_gradients(model, ids, classes, steps=256)
        embedding = model.get_layer("embedding")
        table = embedding.get_weights()[0]
        embedding.set_weights([np.zeros_like(table)])  # The zero baseline, mask kept.
        baseline = model(tf.constant(ids))[0].numpy()
        embedding.set_weights([table])
        for r in range(len(ids)):
            expected = probs[r, classes[r]] - baseline[r, classes[r]]
            self.assertAllClose(maps[r].sum(), expected, atol=2e-3)
        # Deterministic: the midpoint rule samples nothing.
        again = saliency.integrated_gradients(model, ids, classes, steps=256)
        for a, b in zip(maps, again):
            self.assertAllEqual(a, b)

    def test_deletion_matches_a_literal_loop(self):
        model = _model(seed=3)
        ids = _ids(seed=3, rows=3, width=7)
        maps = saliency.deletion(model, ids)
        predicted = model(tf.constant(ids))[0].numpy().argmax(axis=1)
        for r, row in enumerate(ids):
            text = list(row[row != 0])
            full = _probability(model, np.array(text), predicted[r])
            reference = [
                full - _probability(model, np.array(text[:j] + text[j + 1 :]), predicted[r])
                for j in range(len(text))
            ]
            self.assertAllClose(maps[r], reference, atol=1e-5)

    def test_saliency_maps_dispatch_and_refuse_unknown_methods(self):
        model, ids = _model(), _ids(rows=2, width=5)
        for method in saliency.METHODS:
            maps = saliency.saliency_maps(model, ids, method, ig_steps=4)
            self.assertEqual([len(m) for m in maps], [int((r != 0).sum()) for r in ids])
        with self.assertRaisesRegex(ValueError, "Unknown saliency method 'lime'"):
            saliency.saliency_maps(model, ids, "lime")


class HelpersTest(tf.test.TestCase):
    def test_deletion_variants_shorten_each_text(self):
        ids = np.array([[5, 6, 7, 0], [8, 9, 0, 0]], np.int32)
        variants, owner = saliency.deletion_variants(ids)
        self.assertAllEqual(owner, [0, 0, 0, 1, 1])
        self.assertAllEqual(
            variants, [[6, 7, 0, 0], [5, 7, 0, 0], [5, 6, 0, 0], [9, 0, 0, 0], [8, 0, 0, 0]]
        )
        self.assertAllEqual(saliency.delete_token(ids[0], 1), [5, 7, 0, 0])

    def test_insert_tokens_and_drop_span(self):
        row = np.array([5, 6, 7, 8, 0, 0], np.int32)
        self.assertAllEqual(saliency.insert_tokens(row, [2, 3], 1), [5, 2, 3, 6, 7, 8])
        full = np.array([5, 6, 7, 8, 9, 10], np.int32)  # Cut to 4 tokens to fit.
        self.assertAllEqual(saliency.insert_tokens(full, [2, 3], 4), [5, 6, 7, 8, 2, 3])
        self.assertAllEqual(saliency.drop_span(np.arange(6), 1, 2), [0, 3, 4, 5])
        with pytest.raises(ValueError, match="Position 9"):
            saliency.insert_tokens(row, [2], 9)

    def test_top_k_overlap_and_rank_correlation(self):
        a = np.array([0.9, -0.1, 0.5, 0.0])
        b = np.array([0.1, 0.8, -0.7, 0.05])
        # |a| top 2: {0, 2}; |b| top 2: {1, 2}.
        self.assertEqual(saliency.top_k_overlap(a, b, 2), 0.5)
        self.assertEqual(saliency.top_k_overlap(a, b, 10), 1.0)
        self.assertAlmostEqual(saliency.rank_correlation([1, 2, 3], [3, 1, 0.5]), -1.0)
        # Ties take their average rank: the Pearson correlation of the ranks.
        x, y = np.array([1.0, 1.0, 2.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0])
        rx, ry = np.array([1.5, 1.5, 3, 4]), np.array([1, 3, 2, 4])
        self.assertAlmostEqual(saliency.rank_correlation(x, y), np.corrcoef(rx, ry)[0, 1])
        self.assertTrue(np.isnan(saliency.rank_correlation([1, 1], [1, 2])))
        self.assertAlmostEqual(saliency.mass_share([1, -3, 0], [1]), 0.75)


if __name__ == "__main__":
    tf.test.main()
