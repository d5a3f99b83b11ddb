"""Tests for bki_tf.tokenization against Keras' own TextVectorization."""

import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from bki_tf import tokenization

TRICKY = (
    "Hello, World!",
    "don't STOP believin'",
    "tab\tand\nnewline\r\ncarriage\rreturn\vvertical\fform",
    "  leading   and trailing  ",
    "a--b...c (d) [e] {f} <g> h/i\\j |k| ~l~ ^m^ _n_ `o` @p #q $r %s &t *u +v =w ?x ;y :z",
    "it's \"quoted\" 'single'",
    "Ünïcode ÉCOLE café Straße ΣΑΣ İstanbul",
    "émoji 😀 ok… «guillemets» — dash",
    "non\u00a0breaking\u2003em\u3000ideographic\u2028line",
    "ctrl\x1cfile\x1fsep \x85nel",
    "",
    "!!! ... ???",
    "MiXeD CaSe 123 4.5 6,7",
)


def _keras_tokens(texts):
    """Tokens as TextVectorization(lower_and_strip_punctuation, whitespace) splits raw texts."""
    layer = keras.layers.TextVectorization(
        standardize="lower_and_strip_punctuation", split="whitespace", output_mode="int"
    )
    layer.adapt(tf.constant(list(texts)))
    vocab = layer.get_vocabulary()
    ids = layer(tf.constant(list(texts))).numpy()
    return [[str(vocab[i]) for i in row if i != 0] for row in ids]


class TokenizeTest(tf.test.TestCase, parameterized.TestCase):
    def test_tokenize_matches_text_vectorization(self):
        expected = _keras_tokens(TRICKY)
        for text, tokens in zip(TRICKY, expected):
            self.assertEqual(tokenization.tokenize(text), tokens, msg=repr(text))

    def test_hand_checked_examples(self):
        self.assertEqual(tokenization.tokenize("Don't STOP, now!"), ["dont", "stop", "now"])
        # tf.strings.lower (and so the layer) folds ASCII letters only.
        self.assertEqual(tokenization.tokenize("ÉCOLE École"), ["École", "École"])
        self.assertEqual(tokenization.tokenize("a -- b"), ["a", "b"])
        self.assertEqual(tokenization.normalize("  Hi,\tthere!\n"), "hi there")
        self.assertEqual(tokenization.raw_words(" Hi,\tthere!\n"), ["Hi,", "there!"])

    def test_normalize_is_idempotent_under_the_layer(self):
        # encode() feeds normalize(text) to the layer; the layer must not change it further.
        normalized = [tokenization.normalize(t) for t in TRICKY]
        self.assertEqual(
            _keras_tokens(normalized), [[w for w in t.split(" ") if w] for t in normalized]
        )


def _vocab_ids(vocab, text, max_len):
    """Reference ids: token -> its vocabulary index, 1 if unknown, truncated and padded."""
    index = {w: i for i, w in enumerate(vocab)}
    ids = [index.get(t, 1) for t in tokenization.tokenize(text)][:max_len]
    return ids + [0] * (max_len - len(ids))


class EncodeTest(tf.test.TestCase, parameterized.TestCase):
    TRAIN = (
        "the cat sat on the mat",
        "The dog, the cat and the bird!",
        "a bird in the hand",
        "Ünïcode words: café, naïve",
    )

    def test_vocabulary_layout_and_size_cap(self):
        layer = tokenization.build_vectorizer(self.TRAIN, vocab_size=6, max_len=4)
        vocab = layer.get_vocabulary()
        self.assertLen(vocab, 6)
        self.assertEqual(vocab[:2], ["", "[UNK]"])
        # Most frequent first: "the" occurs 6 times, "cat" and "bird" twice.
        self.assertEqual(vocab[2], "the")
        self.assertCountEqual(vocab[3:5], ["cat", "bird"])

    @parameterized.parameters(3, 5, 12)
    def test_encode_lengths_truncation_and_ids(self, max_len):
        layer = tokenization.build_vectorizer(self.TRAIN, vocab_size=100, max_len=max_len)
        vocab = layer.get_vocabulary()
        texts = list(self.TRAIN) + ["unseen words only", "", "the " * 20, "Cat, BIRD; mat."]
        ids, lengths = tokenization.encode(layer, texts, batch_size=3)
        self.assertEqual(ids.dtype, np.int32)
        self.assertEqual(lengths.dtype, np.int32)
        self.assertEqual(ids.shape, (len(texts), max_len))
        expected = np.array([_vocab_ids(vocab, t, max_len) for t in texts])
        self.assertAllEqual(ids, expected)
        expected_lengths = [min(len(tokenization.tokenize(t)), max_len) for t in texts]
        self.assertAllEqual(lengths, expected_lengths)
        # Chunking does not matter.
        self.assertAllEqual(tokenization.encode(layer, texts)[0], ids)

    def test_encode_empty(self):
        layer = tokenization.build_vectorizer(self.TRAIN, vocab_size=10, max_len=7)
        ids, lengths = tokenization.encode(layer, [])
        self.assertEqual(ids.shape, (0, 7))
        self.assertEqual(lengths.shape, (0,))

    @parameterized.parameters(dict(vocab_size=2, max_len=5), dict(vocab_size=10, max_len=0))
    def test_build_vectorizer_errors(self, vocab_size, max_len):
        with self.assertRaises(ValueError):
            tokenization.build_vectorizer(self.TRAIN, vocab_size=vocab_size, max_len=max_len)

    def test_vocabulary_round_trip_gives_identical_ids(self):
        train = list(self.TRAIN) + ["x\x1cy \x85q line\u2028sep ÉCOLE"]
        layer = tokenization.build_vectorizer(train, vocab_size=100, max_len=8)
        vocab = layer.get_vocabulary()
        path = os.path.join(self.get_temp_dir(), "vocab.txt")
        tokenization.save_vocabulary(vocab, path)
        loaded = tokenization.load_vocabulary(path)
        self.assertEqual(loaded, vocab)
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read().count("\n"), len(vocab))
        rebuilt = tokenization.vectorizer_from_vocabulary(loaded, max_len=8)
        self.assertEqual(rebuilt.get_vocabulary(), vocab)
        texts = train + ["never seen before", "The CAT, the mat; the end of it all now"]
        self.assertAllEqual(
            tokenization.encode(rebuilt, texts)[0], tokenization.encode(layer, texts)[0]
        )

    @parameterized.parameters((["", "[UNK]"],), (["[UNK]", "", "a"],), (["a", "b", "c"],), ([],))
    def test_vectorizer_from_vocabulary_rejects_bad_vocabulary(self, vocab):
        with self.assertRaisesRegex(ValueError, "padding token"):
            tokenization.vectorizer_from_vocabulary(vocab, max_len=4)


if __name__ == "__main__":
    tf.test.main()
