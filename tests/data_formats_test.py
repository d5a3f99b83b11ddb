"""Tests for bki_tf.data.load on local files: every layout and format, written into temp dirs."""

import csv
import gzip
import hashlib
import io
import json
import os

import numpy as np
import pytest

from bki_tf import data

# Listed out of sorted order, so that classes.txt order and sorted order differ.
CLASSES = ("gamma", "alpha", "beta")
TRAIN_COUNTS = (7, 5, 9)  # Unbalanced on purpose.
TEST_COUNTS = (4, 3, 5)


def _rows(counts, split, names=CLASSES):
    """`(text, label)` rows whose text names its class, shuffled with a fixed seed."""
    rows = [
        (f"{split} {names[c]} item{i}", names[c]) for c, n in enumerate(counts) for i in range(n)
    ]
    rng = np.random.default_rng(123)
    return [rows[i] for i in rng.permutation(len(rows))]


def _table_bytes(rows, fmt, header=("text", "label")) -> bytes:
    if fmt == "jsonl":
        lines = [json.dumps(dict(zip(header, row))) for row in rows]
        return ("\n".join(lines) + "\n").encode("utf-8")
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _write(path, content: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if str(path).endswith(".gz"):
        content = gzip.compress(content, mtime=0)
    with open(path, "wb") as f:
        f.write(content)
    return str(path)


def _write_table(path, rows, fmt=None, header=("text", "label")):
    fmt = fmt or str(path).removesuffix(".gz").rsplit(".", 1)[1]
    return _write(path, _table_bytes(rows, fmt, header))


def _class_of(text):
    return text.split()[1]


def _check_traceable(ds):
    """Every text carries its own class name and comes from its own split."""
    for texts, labels, split in (
        (ds.train_texts, ds.train_labels, "train"),
        (ds.test_texts, ds.test_labels, "test"),
    ):
        assert [_class_of(t) for t in texts] == [ds.class_names[i] for i in labels.tolist()]
        assert all(t.startswith(split + " ") for t in texts)
        assert len(set(texts)) == len(texts)


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------------------
# Formats and layouts.


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_every_table_format_reads_the_same_rows(tmp_path, fmt, gz):
    folder = tmp_path / "my_reviews"
    ext = fmt + (".gz" if gz else "")
    train = _write_table(folder / f"train.{ext}", _rows(TRAIN_COUNTS, "train"), fmt)
    test = _write_table(folder / f"test.{ext}", _rows(TEST_COUNTS, "test"), fmt)
    ds = data.load(data.DatasetSpec(str(folder)))
    assert ds.name == "my_reviews"
    assert ds.class_names == ("alpha", "beta", "gamma")  # Sorted string labels.
    assert sorted(ds.train_texts) == sorted(t for t, _ in _rows(TRAIN_COUNTS, "train"))
    assert sorted(ds.test_texts) == sorted(t for t, _ in _rows(TEST_COUNTS, "test"))
    _check_traceable(ds)
    p = ds.provenance
    assert p["format"] == ext and p["layout"] == "folder" and p["kind"] == "local"
    assert [f["sha256"] for f in p["files"]] == [_sha256(train), _sha256(test)]
    assert [f["path"] for f in p["files"]] == [os.path.abspath(train), os.path.abspath(test)]
    assert p["label_mapping"] == {"alpha": 0, "beta": 1, "gamma": 2}
    assert p["test"]["given"] and p["balance"] is False and p["sizes_are"] == "total"
    assert p["spec"]["dataset"] == str(folder)
    json.dumps(p)  # JSON-ready.


def test_tsv_and_csv_keep_quotes_commas_tabs_and_newlines(tmp_path):
    rows = [('He said "no", then\nleft', "a"), ("tab\there, é 😀", "b")]
    for fmt in ("csv", "tsv", "jsonl"):
        path = _write_table(tmp_path / fmt / f"train.{fmt}", rows)
        ds = data.load(data.DatasetSpec(path, test_fraction=0.5))
        assert sorted(ds.train_texts + ds.test_texts) == sorted(t for t, _ in rows), fmt


def test_custom_columns_and_extra_columns(tmp_path):
    rows = [(i, f"train x item{i}", "pos" if i % 2 else "neg") for i in range(6)]
    path = _write_table(tmp_path / "d" / "train.csv", rows, header=("id", "review", "sentiment"))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['text', 'label'\].*--text_column"):
        data.load(data.DatasetSpec(path))
    ds = data.load(data.DatasetSpec(path, text_column="review", label_column="sentiment"))
    assert ds.class_names == ("neg", "pos")
    assert ds.provenance["text_column"] == "review"
    pairs = {(t, ds.class_names[y]) for t, y in zip(ds.train_texts + ds.test_texts,
                                                   ds.train_labels.tolist() + ds.test_labels.tolist())}  # fmt: skip
    assert pairs == {(t, y) for _, t, y in rows}


def test_single_file_holds_out_a_recorded_test_share(tmp_path):
    path = _write_table(tmp_path / "reviews.jsonl", _rows(TRAIN_COUNTS, "train"))
    ds = data.load(data.DatasetSpec(path, test_fraction=0.25, seed=3))
    assert ds.name == "reviews"
    assert len(ds.train_texts) + len(ds.test_texts) == sum(TRAIN_COUNTS)
    assert not set(ds.train_texts) & set(ds.test_texts)
    t = ds.provenance["test"]
    assert t == {
        "given": False,
        "split": None,
        "held_out_from": "reviews.jsonl",
        "held_out_fraction": 0.25,
        "held_out_seed": 3,
        "num_held_out": len(ds.test_texts),
    }
    assert ds.provenance["layout"] == "file"
    with pytest.raises(ValueError, match="single file .* training split only"):
        data.load(data.DatasetSpec(path, test_split="test"))


def test_folder_without_test_file_holds_out(tmp_path):
    folder = tmp_path / "d"
    _write_table(folder / "train.tsv.gz", _rows(TRAIN_COUNTS, "train"))
    ds = data.load(data.DatasetSpec(str(folder)))
    assert not ds.provenance["test"]["given"] and ds.provenance["splits"]["test"] is None
    with pytest.raises(FileNotFoundError, match=r"test_split='dev'.*no dev\.csv"):
        data.load(data.DatasetSpec(str(folder), test_split="dev"))


def test_named_splits_read_those_files(tmp_path):
    folder = tmp_path / "d"
    _write_table(folder / "full.csv", _rows(TRAIN_COUNTS, "train"))
    _write_table(folder / "dev.jsonl", _rows(TEST_COUNTS, "test"))
    ds = data.load(data.DatasetSpec(str(folder), train_split="full", test_split="dev"))
    assert len(ds.train_texts) == sum(TRAIN_COUNTS) and len(ds.test_texts) == sum(TEST_COUNTS)
    assert ds.provenance["format"] == "csv+jsonl"
    _check_traceable(ds)


def _write_class_folders(root, counts, split, names=CLASSES):
    for c, n in enumerate(counts):
        for i in range(n):
            sub = "deep" if i % 3 == 0 else ""  # Nested folders are read too.
            _write(os.path.join(root, names[c], sub, f"{i:03d}.txt"),
                   f"{split} {names[c]} item{i}".encode())  # fmt: skip
    _write(os.path.join(root, names[0], "notes.md"), b"not a text")


def test_class_folders_flat(tmp_path):
    folder = tmp_path / "flat"
    _write_class_folders(str(folder), TRAIN_COUNTS, "train")
    ds = data.load(data.DatasetSpec(str(folder), test_fraction=0.3))
    assert ds.name == "flat" and ds.class_names == ("alpha", "beta", "gamma")
    assert len(ds.train_texts) + len(ds.test_texts) == sum(TRAIN_COUNTS)  # notes.md skipped.
    assert [_class_of(t) for t in ds.test_texts] == [ds.class_names[i] for i in ds.test_labels]
    record = ds.provenance["files"][0]
    assert record["num_files"] == sum(TRAIN_COUNTS) and len(record["sha256"]) == 64
    # Deterministic, and the folder hash follows the content.
    again = data.load(data.DatasetSpec(str(folder), test_fraction=0.3))
    assert again.train_texts == ds.train_texts and again.provenance == ds.provenance
    _write(str(folder / "alpha" / "000.txt"), b"train alpha changed")
    assert (
        data.load(data.DatasetSpec(str(folder))).provenance["files"][0]["sha256"]
        != record["sha256"]
    )


def test_class_folders_with_train_and_test_like_aclimdb(tmp_path):
    folder = tmp_path / "aclImdb"
    _write_class_folders(str(folder / "train"), TRAIN_COUNTS, "train")
    _write_class_folders(str(folder / "test"), TEST_COUNTS, "test")
    _write(str(folder / "train" / "unsup" / "0.txt"), b"train unsup unlabelled")
    with pytest.raises(ValueError, match=r"only in train/: \['unsup'\].*classes\.txt"):
        data.load(data.DatasetSpec(str(folder)))
    # classes.txt chooses (and orders) the class folders; unsup is left out.
    _write(str(folder / "classes.txt"), "\n".join(CLASSES).encode())
    ds = data.load(data.DatasetSpec(str(folder)))
    assert ds.name == "aclImdb" and ds.class_names == CLASSES
    assert len(ds.train_texts) == sum(TRAIN_COUNTS) and len(ds.test_texts) == sum(TEST_COUNTS)
    _check_traceable(ds)
    assert ds.provenance["ignored_folders"] == ["unsup"]
    assert ds.provenance["test"]["given"] and ds.provenance["class_names_from"] == "classes.txt"
    _write(str(folder / "classes.txt"), b"gamma\nalpha\ndelta\n")
    with pytest.raises(FileNotFoundError, match="class 'delta' .* no folder 'delta'"):
        data.load(data.DatasetSpec(str(folder)))


# ---------------------------------------------------------------------------
# Labels.


@pytest.mark.parametrize(
    "labels, names, indices",
    [
        ([0, 1, 2, 1], ("0", "1", "2"), [0, 1, 2, 1]),  # Already 0..k-1: unchanged.
        ([-1, 1, 1, -1], ("-1", "1"), [0, 1, 1, 0]),
        ([7, 3, 10, 3], ("3", "7", "10"), [1, 0, 2, 0]),  # Numeric, not string, order.
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_integer_labels_without_classes_txt(tmp_path, labels, names, indices, fmt):
    rows = [(f"text {i}", y) for i, y in enumerate(labels)]
    folder = tmp_path / "d"
    _write_table(folder / f"train.{fmt}", rows)
    _write_table(folder / f"test.{fmt}", rows)
    ds = data.load(data.DatasetSpec(str(folder)))
    assert ds.class_names == names
    got = dict(zip(ds.train_texts, ds.train_labels.tolist()))
    assert got == {f"text {i}": y for i, y in enumerate(indices)}
    assert ds.provenance["label_kind"] == "integer"


def test_string_labels_sorted_over_train_and_test(tmp_path):
    folder = tmp_path / "d"
    _write_table(folder / "train.jsonl", [("a", "pos"), ("b", "neg"), ("c", " pos ")])
    _write_table(folder / "test.jsonl", [("d", "mixed"), ("e", "neg")])
    ds = data.load(data.DatasetSpec(str(folder)))
    assert ds.class_names == ("mixed", "neg", "pos")
    assert dict(zip(ds.train_texts + ds.test_texts, np.concatenate(
        [ds.train_labels, ds.test_labels]).tolist())) == {"a": 2, "b": 1, "c": 2, "d": 0, "e": 1}  # fmt: skip


def test_classes_txt_maps_names_in_its_order_and_indices(tmp_path):
    folder = tmp_path / "d"
    _write_table(folder / "train.csv", _rows(TRAIN_COUNTS, "train"))
    _write_table(folder / "test.csv", _rows(TEST_COUNTS, "test"))
    _write(str(folder / "classes.txt"), "\n".join(CLASSES).encode() + b"\n\n")
    ds = data.load(data.DatasetSpec(str(folder)))
    assert ds.class_names == CLASSES
    assert ds.provenance["label_mapping"] == {"gamma": 0, "alpha": 1, "beta": 2}
    assert ds.provenance["label_kind"] == "class_name"
    _check_traceable(ds)
    # Integer labels index classes.txt (the preset layout).
    _write_table(folder / "train.csv", [("x", 2), ("y", 0)])
    _write_table(folder / "test.csv", [("z", 1)])
    ds = data.load(data.DatasetSpec(str(folder)))
    assert ds.provenance["label_kind"] == "class_index"
    assert dict(zip(ds.train_texts, ds.train_labels.tolist())) == {"x": 2, "y": 0}


@pytest.mark.parametrize(
    "train_rows, message",
    [
        ([("x", "alpha"), ("y", "delta")], r"train\.csv' line 3: label 'delta' is neither a class"),
        ([("x", 0), ("y", 3)], r"train\.csv' line 3: label '3' is neither .* index 0\.\.2"),
        ([("x", "alpha"), ("y", " ")], r"train\.csv' line 3: the label is empty"),
    ],
)
def test_labels_outside_classes_txt(tmp_path, train_rows, message):
    folder = tmp_path / "d"
    _write_table(folder / "train.csv", train_rows)
    _write(str(folder / "classes.txt"), "\n".join(CLASSES).encode())
    with pytest.raises(ValueError, match=message):
        data.load(data.DatasetSpec(str(folder)))


# ---------------------------------------------------------------------------
# Held-out split and sizes.


def test_held_out_split_is_stratified_seeded_and_keeps_a_training_text(tmp_path):
    counts = (10, 3, 1, 7)  # 0.3 * n: 3, 0.9 -> 1, 0.3 -> 0, 2.1 -> 2.
    names = ("a", "b", "c", "d")
    path = _write_table(tmp_path / "f.csv", _rows(counts, "train", names))
    spec = data.DatasetSpec(path, test_fraction=0.3, seed=4)
    ds = data.load(spec)
    assert np.bincount(ds.test_labels, minlength=4).tolist() == [3, 1, 0, 2]
    assert np.bincount(ds.train_labels, minlength=4).tolist() == [7, 2, 1, 5]
    assert sorted(ds.train_texts + ds.test_texts) == sorted(
        t for t, _ in _rows(counts, "train", names)
    )
    assert data.load(spec).test_texts == ds.test_texts
    other = data.load(data.DatasetSpec(path, test_fraction=0.3, seed=5))
    assert set(other.test_texts) != set(ds.test_texts)
    # With every class of 2 texts and fraction 0.9, each class still trains on one.
    path2 = _write_table(tmp_path / "g.csv", _rows((2, 2), "train", names))
    ds2 = data.load(data.DatasetSpec(path2, test_fraction=0.9))
    assert ds2.train_labels.tolist().count(0) == 1 and ds2.train_labels.tolist().count(1) == 1


def test_balanced_sizes_are_per_class(tmp_path):
    path = _write_table(tmp_path / "d" / "train.csv", _rows(TRAIN_COUNTS, "train"))
    _write_table(tmp_path / "d" / "test.csv", _rows(TEST_COUNTS, "test"))
    folder = os.path.dirname(path)
    ds = data.load(data.DatasetSpec(folder, balance=True, train_size=4, test_size=2, seed=1))
    assert np.bincount(ds.train_labels).tolist() == [4, 4, 4]
    assert np.bincount(ds.test_labels).tolist() == [2, 2, 2]
    _check_traceable(ds)
    assert ds.provenance["sizes_are"] == "per_class" and ds.provenance["train_size"] == 4
    # None: the largest balanced subset (the smallest class's count).
    full = data.load(data.DatasetSpec(folder, balance=True))
    assert np.bincount(full.train_labels).tolist() == [5, 5, 5]
    assert np.bincount(full.test_labels).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match=r"only 5 samples but 6 per class .*'alpha'.*at most 5"):
        data.load(data.DatasetSpec(folder, balance=True, train_size=6))


def test_unbalanced_sizes_are_totals_of_a_seeded_uniform_draw(tmp_path):
    path = _write_table(tmp_path / "d" / "train.jsonl", _rows(TRAIN_COUNTS, "train"))
    _write_table(tmp_path / "d" / "test.jsonl", _rows(TEST_COUNTS, "test"))
    folder = os.path.dirname(path)
    ds = data.load(data.DatasetSpec(folder, train_size=10, test_size=5, seed=2))
    assert len(ds.train_texts) == 10 and len(ds.test_texts) == 5
    _check_traceable(ds)
    assert data.load(data.DatasetSpec(folder, train_size=10, test_size=5, seed=2)).train_texts == (
        ds.train_texts
    )
    assert set(data.load(data.DatasetSpec(folder, train_size=10, seed=3)).train_texts) != set(
        ds.train_texts
    )
    # Without balancing, every class keeps its share: over many seeds the draw is uniform.
    hits = np.zeros(3)
    for seed in range(60):
        hits += np.bincount(data.load(data.DatasetSpec(folder, train_size=7, seed=seed)).train_labels, minlength=3)  # fmt: skip
    np.testing.assert_allclose(hits / hits.sum(), np.array([5, 9, 7]) / 21, atol=0.05)  # Sorted.
    with pytest.raises(ValueError, match=r"only 21 texts are available but train_size=22"):
        data.load(data.DatasetSpec(folder, train_size=22))
    with pytest.raises(ValueError, match=r"only 12 texts are available but test_size=13"):
        data.load(data.DatasetSpec(folder, test_size=13))


def test_jsonl_copy_of_the_preset_folder_equals_the_preset_loader(tmp_path, tiny_imdb_dir):
    """The tiny IMDB folder as JSONL with string labels: the same draw as the preset."""
    names = ("negative", "positive")
    folder = tmp_path / "imdb_jsonl"
    for split in ("train", "test"):
        with gzip.open(os.path.join(tiny_imdb_dir, f"{split}.csv.gz"), "rt", encoding="utf-8") as f:
            rows = [(r["text"], names[int(r["label"])]) for r in csv.DictReader(f)]
        _write_table(folder / f"{split}.jsonl", rows)
    for seed in (0, 7):
        preset = data.load_dataset("imdb", "local", tiny_imdb_dir, 5, 3, seed=seed)
        generic = data.load(
            data.DatasetSpec(str(folder), balance=True, train_size=5, test_size=3, seed=seed)
        )
        assert generic.class_names == preset.class_names
        assert generic.train_texts == preset.train_texts
        assert generic.test_texts == preset.test_texts
        np.testing.assert_array_equal(generic.train_labels, preset.train_labels)
        np.testing.assert_array_equal(generic.test_labels, preset.test_labels)
        assert any("<br" in t for t, _ in rows) and not any("<br" in t for t in generic.test_texts)
        assert generic.name == "imdb_jsonl" and preset.name == "imdb"
        # The preset through `load`: the same draw, and the folder's files recorded.
        via_spec = data.load(
            data.DatasetSpec("imdb", data_dir=tiny_imdb_dir, train_size=5, test_size=3, seed=seed)
        )
        assert via_spec.train_texts == preset.train_texts
        assert via_spec.provenance["files"] == preset.provenance["files"]
    assert [f["sha256"] for f in preset.provenance["files"]] == [
        _sha256(os.path.join(tiny_imdb_dir, n))
        for n in ("train.csv.gz", "test.csv.gz", "classes.txt")
    ]


def test_preset_defaults_to_the_paper_sizes(tiny_imdb_dir):
    # 16 training texts per class, fewer than the paper's 5,000.
    with pytest.raises(ValueError, match="only 16 samples but 5000 per class"):
        data.load(data.DatasetSpec("imdb", data_dir=tiny_imdb_dir))
    ds = data.load(data.DatasetSpec("imdb", data_dir=tiny_imdb_dir, balance=False, train_size=9))
    assert len(ds.train_texts) == 9 and len(ds.test_texts) == 16


# ---------------------------------------------------------------------------
# Bad input: one line naming the value and the fix.


@pytest.mark.parametrize(
    "filename, content, error, message",
    [
        ("train.jsonl", b'{"text": "a", "label": 0}\n{"text": "b", "label"\n', ValueError,
         r"train\.jsonl' line 2: not valid JSON"),
        ("train.jsonl", b'{"text": "a", "label": 0}\n\n[1, 2]\n', ValueError,
         r"line 3: a list, not a JSON object"),
        ("train.jsonl", b'{"text": "a", "label": 1.5}\n', ValueError,
         r"line 1: label 1\.5 is not an integer or a string"),
        ("train.jsonl", b'{"text": "a", "label": true}\n', ValueError, r"label True is not"),
        ("train.jsonl", b'{"text": 3, "label": 0}\n', ValueError, r"line 1: text 3 is not a string"),
        ("train.jsonl", b'{"body": "a", "label": 0}\n', ValueError,
         r"line 1: no key\(s\) \['text'\] \(keys are \['body', 'label'\]\)"),
        ("train.csv", b"text,label\na,0\n  ,1\n", ValueError, r"train\.csv' line 3: the text is empty"),
        ("train.tsv", b"text\tlabel\na\t0\nb\n", ValueError, r"line 3: missing field .*tab-separated"),
        ("train.csv", b"text,label\na,x\n\"b,y\n", ValueError, r"train\.csv' line \d+: (not valid CSV|missing field)"),
        ("train.csv.gz", b"not gzip at all", ValueError, r"train\.csv\.gz' is corrupt"),
        ("train.jsonl.gz", gzip.compress(b'{"text": "a", "label": 0}\n' * 40)[:30], ValueError,
         r"train\.jsonl\.gz' is corrupt"),
        ("train.csv", b"text,label\n\xff\xfe,0\n", ValueError, r"corrupt or not UTF-8"),
    ],
)  # fmt: skip
def test_bad_files(tmp_path, filename, content, error, message):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / filename).write_bytes(content)  # As given: no compression added.
    with pytest.raises(error, match=message) as e:
        data.load(data.DatasetSpec(str(folder)))
    assert "\n" not in str(e.value)


def test_bad_paths_and_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="'nowhere/data' is neither a preset"):
        data.load(data.DatasetSpec("nowhere/data"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No dataset found in folder .*empty"):
        data.load(data.DatasetSpec(str(tmp_path / "empty")))
    path = _write(str(tmp_path / "notes.txt"), b"x")
    with pytest.raises(ValueError, match=r"notes\.txt' has an unknown extension"):
        data.load(data.DatasetSpec(path))
    two = tmp_path / "two"
    _write_table(two / "train.csv", [("a", 0)])
    _write_table(two / "train.jsonl", [("a", 0)])
    with pytest.raises(
        ValueError, match=r"2 files for the train split \(train\.csv, train\.jsonl\)"
    ):
        data.load(data.DatasetSpec(str(two)))
    only_test = tmp_path / "only_test"
    _write(str(only_test / "test" / "a" / "1.txt"), b"x")
    with pytest.raises(FileNotFoundError, match="has test/ but no train/"):
        data.load(data.DatasetSpec(str(only_test)))
    empty_class = tmp_path / "empty_class"
    _write(str(empty_class / "a" / "1.txt"), b"x")
    _write(str(empty_class / "b" / "readme.md"), b"x")
    with pytest.raises(ValueError, match=r"Class folder .*b' holds no \.txt files"):
        data.load(data.DatasetSpec(str(empty_class)))
    _write(str(empty_class / "b" / "1.txt"), b"  \n")
    with pytest.raises(ValueError, match=r"Text file .*1\.txt' is empty"):
        data.load(data.DatasetSpec(str(empty_class)))
    header_only = _write(str(tmp_path / "header_only.csv"), b"text,label\n")
    with pytest.raises(
        ValueError, match="header_only: the training split 'header_only.csv' holds no"
    ):
        data.load(data.DatasetSpec(header_only))
    dup = tmp_path / "dup"
    _write_table(dup / "train.csv", [("a", "x")])
    _write(str(dup / "classes.txt"), b"x\ny\nx\n")
    with pytest.raises(ValueError, match="names 'x' twice"):
        data.load(data.DatasetSpec(str(dup)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dataset=""), "dataset='' is empty"),
        (dict(dataset="imdb", text_column="review"), r"Preset 'imdb' .* text_column='review'"),
        (dict(dataset="dbpedia", test_split="validation"), "dataset='huggingface:dbpedia_14'"),
        (dict(dataset="my_dir", source="tfds"), r"source='tfds' does not fit 'my_dir'"),
        (dict(dataset="tfds:glue/sst2", source="local"), "source='local' does not fit"),
        (dict(dataset="my_dir", data_dir="/x"), r"data_dir='/x' is for presets and TFDS"),
        (dict(dataset="tfds:"), "names no TFDS dataset"),
        (dict(dataset="my_dir", test_fraction=1.0), r"test_fraction=1\.0 is outside \[0, 1\)"),
        (dict(dataset="my_dir", test_fraction=-0.1), r"test_fraction=-0\.1 is outside"),
        (dict(dataset="my_dir", train_size=0), "train_size=0 must be an integer >= 1"),
        (dict(dataset="my_dir", test_size=2.5), "test_size=2.5 must be an integer"),
        (dict(dataset="my_dir", balance="yes"), "balance='yes' must be True, False or None"),
        (dict(dataset="my_dir", source="web"), "Unknown data source 'web'"),
        (dict(dataset="my_dir", text_column=""), "text_column='' must be a non-empty string"),
    ],
)
def test_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.DatasetSpec(**kwargs)


def test_spec_kinds_and_dict():
    assert data.is_preset("imdb") and data.is_preset("dbpedia") and not data.is_preset("./imdb")
    assert data.DatasetSpec("imdb").kind == "preset" and data.DatasetSpec("imdb").balanced
    assert data.DatasetSpec("./imdb").kind == "local" and not data.DatasetSpec("./imdb").balanced
    assert data.DatasetSpec("tfds:glue/sst2").kind == "tfds"
    assert data.DatasetSpec("huggingface:dbpedia_14", balance=True).balanced
    d = data.DatasetSpec("x.csv", seed=3).to_dict()
    assert d["dataset"] == "x.csv" and d["seed"] == 3 and d["test_fraction"] == 0.2
    assert data.DatasetSpec(**d) == data.DatasetSpec("x.csv", seed=3)
    assert (
        data.TextDataset(
            "x", ("a",), [], np.array([], np.int64), [], np.array([], np.int64)
        ).provenance
        == {}
    )


# ---------------------------------------------------------------------------
# Default training settings.


def _dataset(train_texts):
    labels = np.zeros(len(train_texts), np.int64)
    return data.TextDataset("x", ("a",), list(train_texts), labels, [], np.array([], np.int64))


def test_suggest_defaults():
    # Token counts 1..20 of "w1 ... wn" (plus punctuation, which is not a token):
    # 95th percentile 19.05 -> 24; distinct tokens w1..w20 -> 20 + 2.
    texts = [" ".join(f"W{i}," for i in range(1, n + 1)) + " !" for n in range(1, 21)]
    assert data.suggest_defaults(_dataset(texts)) == {"max_len": 24, "vocab_size": 22, "epochs": 10}
    short = data.suggest_defaults(_dataset(["a b"] * 1000))
    assert short == {"max_len": 16, "vocab_size": 4, "epochs": 6}
    many = [f"t{i} t{i + 1} t{i + 2}" for i in range(0, 30000, 3)]  # 10,000 texts, 30,000 tokens.
    assert data.suggest_defaults(_dataset(many)) == {
        "max_len": 16,
        "vocab_size": 20000,
        "epochs": 4,
    }
    long = data.suggest_defaults(_dataset(["word " * 500] * 20))
    assert long == {"max_len": 400, "vocab_size": 3, "epochs": 10}
    with pytest.raises(ValueError, match="no training texts"):
        data.suggest_defaults(_dataset([]))


def test_is_poisoned_column_is_the_ground_truth_and_test_fraction_zero_keeps_every_row(tmp_path):
    path = tmp_path / "scan_me.csv"
    rows = ["text,label,is_poisoned"] + [
        f"text number {i} here,{['a', 'b'][i % 2]},{int(i % 5 == 0)}" for i in range(20)
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    ds = data.load(data.DatasetSpec(str(path), test_fraction=0.0))
    assert len(ds.train_texts) == 20 and ds.test_texts == []
    truth = {t: p for t, p in zip(ds.train_texts, ds.train_is_poisoned)}
    assert truth == {f"text number {i} here": i % 5 == 0 for i in range(20)}
    # A subsample and a held-out split carry the column with their rows.
    part = data.load(data.DatasetSpec(str(path), train_size=7, seed=2))
    assert [truth[t] for t in part.train_texts] == part.train_is_poisoned.tolist()
    no_column = tmp_path / "plain.csv"
    no_column.write_text("text,label\nhello there,a\nbye now,b\n", encoding="utf-8")
    assert data.load(data.DatasetSpec(str(no_column), test_fraction=0.0)).train_is_poisoned is None
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label,is_poisoned\nhello there,a,maybe\nbye now,b,0\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: is_poisoned is 'maybe'"):
        data.load(data.DatasetSpec(str(bad)))
