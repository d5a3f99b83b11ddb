"""Tests for bki_tf.models: shapes, the BiLSTM final state, GloVe freezing, SavedModel export."""

import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from bki_tf import models, tokenization

VOCAB, CLASSES, DIM, UNITS, DENSE = 30, 3, 8, 4, 5


def _tiny(seed=0, **kwargs):
    kwargs = {"embedding_dim": DIM, "lstm_units": UNITS, "dense_units": DENSE, **kwargs}
    return models.build_classifier(VOCAB, CLASSES, seed=seed, **kwargs)


def _padded_batch():
    """Right-padded ids of lengths 5, 1, 9 and 3 (width 9), plus the lengths."""
    rng = np.random.default_rng(0)
    lengths = [5, 1, 9, 3]
    ids = np.zeros((len(lengths), 9), np.int32)
    for r, n in enumerate(lengths):
        ids[r, :n] = rng.integers(1, VOCAB, size=n)
    return ids, lengths


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_lstm(sequence, kernel, recurrent_kernel, bias):
    """Final h of a standard LSTM (Keras gate order i, f, c, o) in float64 numpy."""
    units = recurrent_kernel.shape[0]
    h = np.zeros(units)
    c = np.zeros(units)
    for x in sequence:
        z = x @ kernel + h @ recurrent_kernel + bias
        i, f, g, o = (z[k * units : (k + 1) * units] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
    return h


class BuildClassifierTest(tf.test.TestCase, parameterized.TestCase):
    def test_output_shapes_and_probabilities(self):
        model = _tiny()
        ids, _ = _padded_batch()
        probs, hidden = model(ids)
        self.assertEqual(tuple(probs.shape), (4, CLASSES))
        self.assertEqual(tuple(hidden.shape), (4, 2 * UNITS))
        self.assertAllClose(tf.reduce_sum(probs, axis=1), np.ones(4), atol=1e-6)
        models.check_classifier(model)

    def test_hidden_is_bilstm_final_state_of_unpadded_sequence(self):
        model = _tiny(seed=3)
        ids, lengths = _padded_batch()
        _, hidden = model(ids)
        table = model.get_layer(models.EMBEDDING_LAYER).embeddings.numpy().astype(np.float64)
        bilstm = model.get_layer(models.BILSTM_LAYER)
        fw = [w.astype(np.float64) for w in bilstm.forward_layer.get_weights()]
        bw = [w.astype(np.float64) for w in bilstm.backward_layer.get_weights()]
        expected = []
        for row, n in zip(ids, lengths):
            sequence = table[row[:n]]
            expected.append(
                np.concatenate([_numpy_lstm(sequence, *fw), _numpy_lstm(sequence[::-1], *bw)])
            )
        self.assertAllClose(hidden, np.array(expected), atol=1e-5)
        # The same text padded to another width gives the same state.
        _, hidden_wide = model(np.pad(ids, ((0, 0), (0, 6))))
        self.assertAllClose(hidden_wide, hidden, atol=1e-6)

    def test_seeded_initialisation_is_deterministic(self):
        a, b, c = _tiny(seed=1), _tiny(seed=1), _tiny(seed=2)
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            self.assertAllEqual(wa, wb)
        self.assertNotAllClose(a.get_weights()[0], c.get_weights()[0])

    @parameterized.parameters(False, True)
    def test_glove_matrix_frozen_by_default(self, trainable):
        matrix = np.random.default_rng(0).normal(size=(VOCAB, 6)).astype(np.float32)
        model = _tiny(embedding_matrix=matrix, trainable_embeddings=trainable)
        layer = model.get_layer(models.EMBEDDING_LAYER)
        self.assertEqual(layer.output_dim, 6)  # The matrix, not embedding_dim, sets the width.
        self.assertAllEqual(layer.embeddings.numpy(), matrix)
        self.assertEqual(layer.trainable, trainable)
        trainable_ids = {id(v) for v in model.trainable_weights}
        self.assertEqual(id(layer.embeddings) in trainable_ids, trainable)
        # One optimiser step changes the embeddings only when they are trainable.
        trainer = models.probabilities_model(model)
        trainer.compile(optimizer=keras.optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
        ids, _ = _padded_batch()
        trainer.train_on_batch(ids, np.array([0, 1, 2, 0]))
        changed = not np.allclose(layer.embeddings.numpy(), matrix)
        self.assertEqual(changed, trainable)

    def test_random_embeddings_are_trainable(self):
        model = _tiny()
        self.assertTrue(model.get_layer(models.EMBEDDING_LAYER).trainable)

    @parameterized.named_parameters(
        ("small_vocab", dict(vocab_size=2, num_classes=2)),
        ("one_class", dict(vocab_size=30, num_classes=1)),
        ("matrix_rows", dict(vocab_size=30, num_classes=2, embedding_matrix=np.zeros((29, 4)))),
        ("matrix_rank", dict(vocab_size=30, num_classes=2, embedding_matrix=np.zeros(30))),
    )
    def test_build_errors(self, kwargs):
        with self.assertRaises(ValueError):
            models.build_classifier(**kwargs)


_ENCODER_LAYERS = {
    "bilstm": ("bilstm",),
    "lstm": ("lstm",),
    "gru": ("gru",),
    "bigru": ("bigru",),
    "stacked_bilstm": ("bilstm_1", "bilstm_2"),
    "bilstm_gap": ("bilstm_sequence", "average_pooling"),
}


class ArchitectureTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters(*models.ARCHITECTURES)
    def test_outputs_masking_and_recorded_architecture(self, architecture):
        model = _tiny(seed=2, architecture=architecture)
        # O(1) embeddings: a padding leak would show far above the tolerance.
        table = model.get_layer(models.EMBEDDING_LAYER).embeddings
        table.assign(np.random.default_rng(5).normal(size=table.shape).astype(np.float32))
        self.assertEqual(models.architecture_of(model), architecture)
        self.assertEqual(model.name, f"{architecture}_classifier")
        for name in _ENCODER_LAYERS[architecture]:
            model.get_layer(name)
        self.assertTrue(model.get_layer(models.EMBEDDING_LAYER).mask_zero)
        models.check_classifier(model)
        ids, lengths = _padded_batch()
        probs, hidden = model(ids)
        width = UNITS if architecture in ("lstm", "gru") else 2 * UNITS
        self.assertEqual(tuple(probs.shape), (4, CLASSES))
        self.assertEqual(tuple(hidden.shape), (4, width))
        self.assertIs(model.outputs[1], model.get_layer(models.HIDDEN).output)
        # Each padded row has the outputs of its unpadded text.
        for row, n in enumerate(lengths):
            _, alone = model(ids[row : row + 1, :n])
            self.assertAllClose(hidden[row], alone[0], atol=1e-5)
        # The architecture survives saving and a safe_mode load.
        path = os.path.join(self.get_temp_dir(), f"{architecture}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        self.assertEqual(models.architecture_of(loaded), architecture)
        self.assertAllClose(loaded(ids)[1], hidden, atol=1e-6)

    def test_default_architecture_is_the_unchanged_bilstm(self):
        default, explicit = _tiny(seed=1), _tiny(seed=1, architecture="bilstm")
        self.assertEqual(default.name, "bilstm_classifier")
        self.assertEqual(
            [x.name for x in default.layers],
            ["token_ids", "embedding", "bilstm", "hidden", "dense", "probabilities"],
        )
        lstm = ("kernel", "recurrent_kernel", "bias")
        self.assertEqual(
            [w.path for w in default.weights],
            ["embedding/embeddings"]
            + [f"bilstm/{d}_lstm/lstm_cell/{w}" for d in ("forward", "backward") for w in lstm]
            + ["dense/kernel", "dense/bias", "probabilities/kernel", "probabilities/bias"],
        )
        for a, b in zip(default.get_weights(), explicit.get_weights()):
            self.assertAllEqual(a, b)

    def test_architectures_differ_and_are_seeded(self):
        a = _tiny(seed=3, architecture="stacked_bilstm")
        b = _tiny(seed=3, architecture="stacked_bilstm")
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            self.assertAllEqual(wa, wb)
        # The two stacked layers do not share initial weights.
        first = a.get_layer("bilstm_1").forward_layer.cell.recurrent_kernel.numpy()
        second = a.get_layer("bilstm_2").forward_layer.cell.recurrent_kernel.numpy()
        self.assertNotAllClose(first, second)

    def test_unknown_architecture_and_foreign_models(self):
        with self.assertRaisesRegex(ValueError, r"Unknown architecture 'cnn'.*'bilstm_gap'"):
            _tiny(architecture="cnn")
        tokens = keras.Input(shape=(None,), dtype="int32")
        foreign = keras.Model(tokens, keras.layers.Embedding(VOCAB, 2)(tokens), name="gru_model")
        self.assertIsNone(models.architecture_of(foreign))


class CheckClassifierTest(tf.test.TestCase):
    def test_rejects_single_output_model(self):
        single = models.probabilities_model(_tiny())
        with self.assertRaisesRegex(ValueError, "two: class probabilities"):
            models.check_classifier(single)

    def test_rejects_model_without_named_layers(self):
        tokens = keras.Input(shape=(None,), dtype="int32")
        x = keras.layers.Embedding(VOCAB, 4, mask_zero=True)(tokens)
        hidden = keras.layers.Bidirectional(keras.layers.LSTM(2))(x)
        probs = keras.layers.Dense(2, activation="softmax")(hidden)
        with self.assertRaisesRegex(ValueError, "lacks the .*'hidden' layer.*method='generic'"):
            models.check_classifier(keras.Model(tokens, [probs, hidden]))

    def test_probabilities_model_shares_weights(self):
        model = _tiny()
        ids, _ = _padded_batch()
        self.assertAllClose(models.probabilities_model(model)(ids), model(ids)[0], atol=1e-7)


class SavedModelTest(tf.test.TestCase):
    def test_serve_signature_on_raw_strings_matches_classifier(self):
        train = ["the cat sat on the mat", "a dog and a bird", "Ünïcode café words"]
        vectorizer = tokenization.build_vectorizer(train, vocab_size=VOCAB, max_len=6)
        model = _tiny(seed=4)
        path = os.path.join(self.get_temp_dir(), "export", "saved_model")
        models.export_saved_model(model, vectorizer, path)
        texts = [
            "The CAT sat!",
            "a dog, and a bird... on the mat; the cat sat there for a long while",
            "unknown zebra",
            "",
            "Ünïcode café",
        ]
        loaded = tf.saved_model.load(path)
        outputs = loaded.signatures["serve"](text=tf.constant(texts))
        ids, _ = tokenization.encode(vectorizer, texts)
        probs, hidden = model(ids)
        self.assertAllClose(outputs[models.PROBABILITIES], probs, atol=1e-5)
        self.assertAllClose(outputs[models.HIDDEN], hidden, atol=1e-5)
        # The tracked endpoint agrees with the signature.
        direct = loaded.serve(tf.constant(texts))
        self.assertAllClose(direct[models.PROBABILITIES], probs, atol=1e-5)


if __name__ == "__main__":
    tf.test.main()
