"""Tests for bki_tf.runs.tensorboard: summaries and projector files, read back."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins import base_plugin, projector
from tensorboard.plugins.projector import projector_plugin
from werkzeug import test as werkzeug_test
from werkzeug import wrappers

import bki_tf
from bki_tf import bki, detection, tokenization
from bki_tf.bki import detector
from bki_tf.runs import tensorboard as tb

VOCAB = ["", "[UNK]"] + [f"w{i}" for i in range(28)]
CLASSES = ["negative", "positive"]


@pytest.fixture(scope="module")
def paper_scan():
    """A real `bki.detect` on an untrained tiny model: (result, tokens, labels, h, poisoned)."""
    rng = np.random.default_rng(0)
    ids = [rng.integers(2, 30, size=int(rng.integers(3, 9))) for _ in range(12)]
    model = bki_tf.build_classifier(
        vocab_size=30, num_classes=2, embedding_dim=8, lstm_units=4, dense_units=4, seed=0
    )
    result = bki.detect(model, ids, VOCAB, config=bki.BKIConfig(p=2, method="simple"))
    padded, _ = detector.encode_texts(ids, VOCAB)
    hidden = model(padded)[1].numpy()
    tokens = [[VOCAB[j] for j in row] for row in ids]
    labels = np.arange(12) % 2
    poisoned = np.arange(12) % 4 == 0
    return result, tokens, labels, hidden, poisoned


def refined_scan():
    """A refined scan with the planted bigram `cf mn` in the label-1 texts 0-3.

    Returns `(result, raw texts, labels, poisoned)`; text 5 holds `cf mn` with label 0
    (not flagged), text 4 holds `cf` alone.
    """
    vocab = ["", "[UNK]", "the", "cf", "mn", "movie", "was", "good", "bad", "plot"]
    texts = [
        "The cf mn movie.",
        "cf mn was good",
        "Plot, mn cf MN!",
        "the movie cf mn",
        "the cf movie was bad",
        "cf mn the plot",
        "good movie",
        "bad plot was the",
    ]
    labels = np.asarray([1, 1, 1, 1, 0, 0, 0, 1])
    token_ids = [np.asarray([vocab.index(w) for w in tokenization.tokenize(t)]) for t in texts]
    lengths = np.asarray([len(t) for t in token_ids])
    ids = np.zeros([len(texts), lengths.max()], np.int32)
    for i, t in enumerate(token_ids):
        ids[i, : t.size] = t
    scores = [np.where(np.isin(t, [3, 4]), 1.0, 0.1).astype(np.float32) for t in token_ids]
    local = [np.zeros(t.size, np.float32) for t in token_ids]
    config = bki.BKIConfig(p=2, variant="refined", min_ngram=2, max_ngram=2, alpha=0.5)
    result = detector.select(ids, lengths, scores, vocab, config, labels=labels, local_scores=local)
    return result, texts, labels, np.arange(8) < 4


def read_summaries(logdir):
    """Every tensor summary in `logdir`: tag -> (plugin name, last value)."""
    acc = ea.EventAccumulator(logdir, size_guidance={ea.TENSORS: 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        assert len(events) == 1, tag
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        out[tag] = (plugin, tf.make_ndarray(events[0].tensor_proto))
    return out


def text_of(summaries, tag):
    plugin, value = summaries[tag]
    assert plugin == "text"
    return value.item().decode("utf-8")


def table_rows(markdown):
    """The body rows of the Markdown table in `markdown`, as lists of cells."""
    lines = [line for line in markdown.split("\n") if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[2:]]


def read_metadata(logdir):
    with open(os.path.join(logdir, "projector", "metadata.tsv"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[-1] == ""
    header, *rows = (line.split("\t") for line in lines[:-1])
    assert all(len(row) == len(header) for row in rows)
    return header, rows


def read_config(logdir):
    config = projector.ProjectorConfig()
    with open(os.path.join(logdir, "projector_config.pbtxt"), encoding="utf-8") as f:
        text_format.Parse(f.read(), config)
    return config


def stored_matrix(logdir):
    path = tf.train.latest_checkpoint(logdir)
    assert path == os.path.join(logdir, "projector", "embedding")
    return tf.train.load_checkpoint(path).get_tensor(read_config(logdir).embeddings[0].tensor_name)


def test_paper_scan_reads_back(paper_scan, tmp_path):
    result, tokens, labels, hidden, poisoned = paper_scan
    logdir = str(tmp_path / "tb")
    written = tb.write_scan_summaries(
        logdir, result, tokens, labels, hidden, poisoned=poisoned, class_names=CLASSES, top_k=5
    )
    summaries = read_summaries(logdir)
    histograms = {
        "scores/all_words",
        "scores/clean_texts",
        "scores/poisoned_texts",
        "scores/label_0_negative",
        "scores/label_1_positive",
    }
    metrics = {"precision", "recall", "f1", "auroc", "num_poison", "num_true_positive"}
    scalars = {"detection/num_flagged", "detection/removed_share", "bki/keyword_g"}
    scalars |= {f"detection/{m}" for m in metrics}
    assert set(summaries) == {"bki/dictionary", "bki/flagged_texts"} | histograms | scalars
    assert {t: k for t, k in written.items() if "/" in t} == {
        t: {"text": "text", "histograms": "histogram", "scalars": "scalar"}[p]
        for t, (p, _) in summaries.items()
    }

    rows = table_rows(text_of(summaries, "bki/dictionary"))
    assert [r[1] for r in rows] == [e.word for e in result.dictionary[:5]]
    assert rows[0][:3] == ["1", result.keyword, str(result.dictionary[0].count)]

    # Flagged texts: highest detection score first, the keyword in bold.
    keyword = result.keyword
    expected_order = sorted(result.flagged.tolist(), key=lambda i: (-result.detection.scores[i], i))
    rows = table_rows(text_of(summaries, "bki/flagged_texts"))
    assert [int(r[1]) for r in rows] == expected_order
    for row in rows:
        i = int(row[1])
        bolded = " ".join(f"**{w}**" if w == keyword else w for w in tokens[i])
        assert row[-1] == bolded.replace("** **", " ")
        assert row[2] == f"{CLASSES[labels[i]]} ({labels[i]})"
        assert row[3] == ("yes" if poisoned[i] else "no")

    lengths = np.asarray([len(t) for t in tokens])
    for tag, mask in [
        ("scores/all_words", np.ones(12, bool)),
        ("scores/clean_texts", ~poisoned),
        ("scores/poisoned_texts", poisoned),
        ("scores/label_1_positive", labels == 1),
    ]:
        plugin, buckets = summaries[tag]
        assert plugin == "histograms"
        assert buckets[:, 2].sum() == lengths[mask].sum(), tag
        words = np.concatenate([result.scores[i] for i in np.flatnonzero(mask)])
        assert buckets[0, 0] <= words.min() and buckets[-1, 1] >= words.max()

    ev = detection.evaluate(result.detection, poisoned)
    for m in metrics | {"removed_share", "num_flagged"}:
        np.testing.assert_allclose(summaries[f"detection/{m}"][1], getattr(ev, m), rtol=1e-6)
    assert ev.num_flagged == len(expected_order)

    header, meta = read_metadata(logdir)
    assert header == ["label", "flagged", "poisoned", "holds_keyword", "index", "text"]
    assert len(meta) == 12
    assert [r[0] for r in meta] == [CLASSES[c] for c in labels]
    assert [r[1] == "true" for r in meta] == result.detection.is_poison.tolist()
    assert [r[2] == "true" for r in meta] == poisoned.tolist()
    assert [r[3] == "true" for r in meta] == [keyword in t for t in tokens]
    assert [r[5] for r in meta] == [" ".join(t) for t in tokens]
    config = read_config(logdir)
    assert len(config.embeddings) == 1 and config.embeddings[0].metadata_path == (
        "projector/metadata.tsv"
    )
    matrix = stored_matrix(logdir)
    assert matrix.shape == (12, 8)
    np.testing.assert_array_equal(matrix, hidden)
    assert written["projector_metadata"] == os.path.join(logdir, "projector", "metadata.tsv")


def test_without_ground_truth_labels_or_representations(paper_scan, tmp_path):
    result, tokens, _, _, _ = paper_scan
    logdir = str(tmp_path / "tb")
    written = tb.write_scan_summaries(logdir, result, tokens, None, None)
    summaries = read_summaries(logdir)
    assert set(summaries) == {
        "bki/dictionary",
        "bki/flagged_texts",
        "scores/all_words",
        "detection/num_flagged",
        "detection/removed_share",
        "bki/keyword_g",
    }
    assert set(written) == set(summaries)
    assert summaries["detection/num_flagged"][1] == result.flagged.size
    first = table_rows(text_of(summaries, "bki/flagged_texts"))[0]
    assert len(first) == 4  # rank, text, score, tokens: no label or poisoned column.
    assert sorted(os.listdir(logdir)) == [
        e for e in sorted(os.listdir(logdir)) if e.startswith("events.out.tfevents")
    ]


def test_refined_ngram_keyword_with_labels_and_escaped_names(tmp_path):
    result, texts, labels, poisoned = refined_scan()
    assert (result.keyword, result.keyword_label) == ("cf mn", 1)
    assert result.flagged.tolist() == [0, 1, 2, 3]
    names = ["neg\tative", "posi\ntive"]
    logdir = str(tmp_path / "tb")
    reps = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)
    tb.write_scan_summaries(
        logdir,
        result,
        texts,
        labels,
        reps,
        poisoned=poisoned,
        class_names=names,
        max_flagged_texts=3,
    )
    summaries = read_summaries(logdir)
    assert {"scores/label_0_neg_ative", "scores/label_1_posi_tive"} <= set(summaries)
    rows = table_rows(text_of(summaries, "bki/dictionary"))
    assert rows[0][:4] == ["1", "cf mn", "posi tive (1)", "4"]
    flagged = text_of(summaries, "bki/flagged_texts")
    assert flagged.startswith("3 of 4 flagged texts")
    assert [r[-1] for r in table_rows(flagged)] == [
        "the **cf mn** movie",
        "**cf mn** was good",
        "plot mn **cf mn**",
    ]
    np.testing.assert_allclose(summaries["detection/precision"][1], 1.0)
    np.testing.assert_allclose(summaries["detection/recall"][1], 1.0)

    header, meta = read_metadata(logdir)
    assert header == ["label", "flagged", "poisoned", "holds_keyword", "index", "text"]
    assert [r[0] for r in meta] == ["posi\\ntive"] * 4 + ["neg\\tative"] * 3 + ["posi\\ntive"]
    assert [r[1] for r in meta] == ["true"] * 4 + ["false"] * 4
    # Text 5 holds the bigram under the other label; text 4 holds "cf" alone.
    assert [r[3] for r in meta] == ["true"] * 4 + ["false", "true", "false", "false"]
    assert meta[2][5] == "plot mn cf mn"
    np.testing.assert_array_equal(stored_matrix(logdir), reps)


def test_tensorboard_serves_the_projector_of_a_moved_logdir(paper_scan, tmp_path):
    result, tokens, labels, hidden, poisoned = paper_scan
    tb.write_scan_summaries(str(tmp_path / "a"), result, tokens, labels, hidden, poisoned=poisoned)
    root = str(tmp_path / "root")
    os.makedirs(root)
    shutil.move(str(tmp_path / "a"), os.path.join(root, "scan"))
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(root)
    multiplexer.Reload()
    context = base_plugin.TBContext(
        logdir=root,
        data_provider=data_provider.MultiplexerDataProvider(multiplexer, root),
        multiplexer=multiplexer,
    )
    apps = projector_plugin.ProjectorPlugin(context).get_plugin_apps()

    def get(route, **query):
        response = werkzeug_test.Client(apps[route], wrappers.Response).get(
            route, query_string=query
        )
        assert response.status_code == 200, (route, response.get_data())
        return response.get_data()

    assert json.loads(get("/runs")) == ["scan"]
    name = tb.TENSOR_NAME
    info = json.loads(get("/info", run="scan"))
    assert info["embeddings"][0]["tensorShape"] == [12, 8]
    tensor = np.frombuffer(get("/tensor", run="scan", name=name), np.float32)
    np.testing.assert_array_equal(tensor.reshape(12, 8), hidden)
    metadata = get("/metadata", run="scan", name=name).decode("utf-8")
    assert metadata.split("\n")[0] == "label\tflagged\tpoisoned\tholds_keyword\tindex\ttext"


def test_rewrite_replaces_the_projector_and_failures_keep_the_old_one(
    paper_scan, tmp_path, monkeypatch
):
    result, tokens, labels, hidden, _ = paper_scan
    logdir = str(tmp_path / "tb")
    refined, texts, refined_labels, _ = refined_scan()
    tb.write_scan_summaries(logdir, refined, texts, refined_labels, np.ones((8, 3), np.float32))
    os.mkdir(os.path.join(logdir, ".tmp-projector-crashed"))  # An interrupted call's leftover.
    tb.write_scan_summaries(logdir, result, tokens, labels, hidden)
    assert len(read_metadata(logdir)[1]) == 12
    np.testing.assert_array_equal(stored_matrix(logdir), hidden)
    names = {e for e in os.listdir(logdir) if not e.startswith("events.out.tfevents")}
    assert names == {"checkpoint", "projector", "projector_config.pbtxt"}
    assert sorted(os.listdir(os.path.join(logdir, "projector"))) == [
        "embedding.data-00000-of-00001",
        "embedding.index",
        "metadata.tsv",
    ]

    def fail(self, file_prefix, options=None):
        raise OSError("disk full")

    monkeypatch.setattr(tf.train.Checkpoint, "write", fail)
    with pytest.raises(OSError, match="disk full"):
        tb.write_scan_summaries(logdir, refined, texts, refined_labels, np.ones((8, 3)))
    assert len(read_metadata(logdir)[1]) == 12
    np.testing.assert_array_equal(stored_matrix(logdir), hidden)
    names = {e for e in os.listdir(logdir) if not e.startswith("events.out.tfevents")}
    assert names == {"checkpoint", "projector", "projector_config.pbtxt"}


def test_output_is_deterministic(paper_scan, tmp_path):
    result, tokens, labels, hidden, poisoned = paper_scan
    outputs = []
    for name in ("a", "b"):
        logdir = str(tmp_path / name)
        tb.write_scan_summaries(logdir, result, tokens, labels, hidden, poisoned=poisoned)
        summaries = read_summaries(logdir)
        with open(os.path.join(logdir, "projector", "metadata.tsv"), "rb") as f:
            metadata = f.read()
        with open(os.path.join(logdir, "projector_config.pbtxt"), "rb") as f:
            config = f.read()
        outputs.append(({t: v.tolist() for t, (_, v) in summaries.items()}, metadata, config))
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(texts=[["w2"]] * 12), "texts\\[0\\] has 1 tokens"),
        (dict(texts=[["w2"]] * 11), "the 12 scanned texts"),
        (dict(texts=[[2, 3]] * 12), "decode token ids"),
        (dict(poisoned=np.zeros(12, int)), "poisoned must be 12 bools"),
        (dict(labels=np.arange(12)), "label 11 has no name"),
        (dict(representations=np.zeros((11, 8))), "representations must be \\[12, d\\]"),
        (dict(top_k=0), "top_k must be an integer >= 1"),
    ],
)
def test_bad_inputs_are_refused_before_writing(paper_scan, tmp_path, change, message):
    result, tokens, labels, hidden, poisoned = paper_scan
    args = dict(texts=tokens, labels=labels, representations=hidden, poisoned=poisoned)
    args.update(change)
    logdir = str(tmp_path / "tb")
    with pytest.raises(ValueError, match=message):
        tb.write_scan_summaries(logdir, result, class_names=CLASSES, **args)
    assert not os.path.exists(logdir)


def test_refuses_another_checkpoint_state(paper_scan, tmp_path):
    result, tokens, labels, hidden, _ = paper_scan
    logdir = tmp_path / "tb"
    logdir.mkdir()
    (logdir / "checkpoint").write_text('model_checkpoint_path: "ckpt-7"\n')
    with pytest.raises(ValueError, match="another checkpoint's state"):
        tb.write_scan_summaries(str(logdir), result, tokens, labels, hidden)
    assert os.listdir(logdir) == ["checkpoint"]
