"""The flag-free defaults, offline: `--source=auto`, `--glove=auto` and `--profile=quick`."""

import hashlib
import os
import urllib.request
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from bki_tf import artifacts, data, embeddings
from bki_tf.runs import attack

DIM = 100


def _glove_archive(folder, dims=(50, DIM), broken_line=None):
    """A GloVe-6B-shaped zip with three words per dimension; returns its file:// URL."""
    path = os.path.join(folder, "glove.6B.zip")
    with zipfile.ZipFile(path, "w") as z:
        for dim in dims:
            lines = [
                " ".join([word] + [f"{0.01 * (k + i):.2f}" for k in range(dim)])
                for i, word in enumerate(("film", "great", "awful"))
            ]
            if broken_line is not None:
                lines.insert(1, broken_line)
            z.writestr(f"glove.6B.{dim}d.txt", "\n".join(lines) + "\n")
    return "file://" + path


def test_auto_downloads_once_checks_and_caches(tmp_path, monkeypatch):
    origin = _glove_archive(str(tmp_path))
    cache = str(tmp_path / "cache")
    path = embeddings.resolve_glove("auto", DIM, origin=origin, cache_dir=cache)
    assert path == os.path.join(cache, f"glove.6B.{DIM}d.txt")
    assert embeddings.check_glove_file(path) == DIM
    matrix, coverage = embeddings.load_glove(path, ["", "[UNK]", "great", "zebra"])
    assert coverage.found == 1 and matrix.shape == (4, DIM)
    np.testing.assert_allclose(matrix[2, :2], [0.01, 0.02])
    # A second call reads the cache: no download.
    monkeypatch.setattr(urllib.request, "urlretrieve", _must_not_download)
    assert embeddings.resolve_glove("auto", DIM, origin=origin, cache_dir=cache) == path
    # Another dimension comes out of the cached archive, still without a download.
    other = embeddings.resolve_glove("auto", 50, origin=origin, cache_dir=cache)
    assert embeddings.check_glove_file(other) == 50
    assert sorted(os.listdir(cache)) == ["glove.6B.100d.txt", "glove.6B.50d.txt", "glove.6B.zip"]


def _must_not_download(*args, **kwargs):
    raise AssertionError("downloaded although the cache holds the file")


def test_none_and_paths_need_no_download():
    assert embeddings.resolve_glove(None) is None
    assert embeddings.resolve_glove("none") is None
    assert embeddings.resolve_glove("") is None
    assert embeddings.resolve_glove("/some/glove.txt") == "/some/glove.txt"
    with pytest.raises(ValueError, match="glove_dim=64"):
        embeddings.resolve_glove("auto", 64)


def test_an_interrupted_download_leaves_nothing_and_says_what_to_pass(tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")

    def dies_half_way(url, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"PK\x03\x04 a third of the archive")
        raise ConnectionResetError("Connection reset by peer")

    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", dies_half_way)
    with pytest.raises(ValueError, match=r"Cannot download GloVe .*--glove=PATH.*--glove=none"):
        embeddings.resolve_glove(
            "auto", DIM, origin="https://example.invalid/g.zip", cache_dir=cache
        )
    assert os.listdir(cache) == []


def test_a_damaged_archive_or_file_is_not_cached(tmp_path):
    cache = str(tmp_path / "cache")
    origin = _glove_archive(str(tmp_path), dims=(DIM,), broken_line="oops 1.0 2.0")
    with pytest.raises(ValueError, match="line 2 has 2 values, expected 100"):
        embeddings.resolve_glove("auto", DIM, origin=origin, cache_dir=cache)
    assert not os.path.exists(os.path.join(cache, f"glove.6B.{DIM}d.txt"))
    assert [f for f in os.listdir(cache) if f.startswith(".tmp-")] == []
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"<html>404</html>")
    cache2 = str(tmp_path / "cache2")
    with pytest.raises(ValueError, match="not a zip archive"):
        embeddings.resolve_glove("auto", DIM, origin="file://" + str(not_zip), cache_dir=cache2)
    assert os.listdir(cache2) == []


def test_source_auto_reads_a_local_folder_offline(tiny_imdb_dir, monkeypatch):
    monkeypatch.setattr(tfds, "load", _offline)
    assert data.resolve_source("imdb", "auto", tiny_imdb_dir) == "local"
    local = data.load_dataset("imdb", "local", tiny_imdb_dir, 4, 2, seed=0)
    auto = data.load_dataset("imdb", "auto", tiny_imdb_dir, 4, 2, seed=0)
    assert auto.train_texts == local.train_texts and auto.test_texts == local.test_texts
    np.testing.assert_array_equal(auto.train_labels, local.train_labels)


def _offline(*args, **kwargs):
    raise ConnectionError("Failed to establish a new connection: Name or service not known")


def test_source_auto_without_a_local_folder_goes_to_the_catalogue(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tfds, "load", lambda *a, **k: calls.append(k) or _offline())
    empty = str(tmp_path / "tfds_cache")
    os.makedirs(empty)
    assert data.resolve_source("imdb", "auto", empty) == "tfds"
    assert data.resolve_source("imdb", "auto", None) == "tfds"
    with pytest.raises(ValueError) as e:
        data.load_dataset("imdb", "auto", None)
    message = str(e.value)
    assert "\n" not in message
    assert "--data_dir=<folder with train.csv.gz" in message and "internet" in message
    assert calls and calls[0]["data_dir"] is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_dataset("imdb", "auto", str(tmp_path / "typo"))
    # source="tfds" asked explicitly keeps TFDS' own error.
    with pytest.raises(ConnectionError):
        data.load_dataset("imdb", "tfds", None)


def test_quick_profile_config():
    config = attack.AttackConfig.for_profile("quick", data_dir="x")
    assert (config.dataset, config.train_size, config.test_size) == ("imdb", 2000, 500)
    assert (config.max_len, config.epochs, config.glove) == (100, 4, "none")
    assert config.glove_file() is None and config.fine_tune_embeddings
    assert config.trigger == "no cross, no crown" and config.poison_rate == 0.03
    # Explicit values win over the profile's.
    explicit = attack.AttackConfig.for_profile("quick", data_dir="x", epochs=1, glove="g.txt")
    assert (explicit.glove, explicit.epochs) == ("g.txt", 1)
    paper = attack.AttackConfig.for_profile(
        "paper", "dbpedia", data_dir="x", trigger="a b", target="0", poison_rate=0.02
    )
    assert paper.glove == "auto" and paper.glove_dim == 100 and paper.epochs == 6
    assert paper == attack.AttackConfig.for_dataset(
        "dbpedia", data_dir="x", glove="auto", trigger="a b", target="0", poison_rate=0.02
    )
    with pytest.raises(ValueError, match="--dataset is required"):
        attack.AttackConfig.for_profile(
            "paper", data_dir="x", trigger="a", target="0", poison_rate=0
        )
    with pytest.raises(ValueError, match="Unknown profile"):
        attack.AttackConfig.for_profile("fast")


def test_old_configs_resume_as_the_same_run(tiny_imdb_dir):
    """`source=local` written before `auto` existed, `glove=None` vs `none`: one run."""
    config = attack.AttackConfig.for_profile("quick", data_dir=tiny_imdb_dir).to_dict()
    old = {**config, "source": "local", "glove": None}
    del old["glove_dim"]
    new = attack.normalized_identity({**attack._ADDED_KEYS, **old})  # pylint: disable=protected-access
    assert new == attack.normalized_identity(config)


def test_glove_sha256_is_the_files_sha256(tmp_path):
    path = tmp_path / "g.txt"
    path.write_bytes(b"a 1.0\n" * 300_000)  # Several read blocks.
    assert artifacts.file_sha256(str(path)) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_quick_profile_through_the_flags_keeps_every_profile_value():
    """Flags left unset take the profile's values (a flag default would hide them)."""
    from absl.testing import flagsaver

    from experiments import common_flags as cf
    from experiments import pipeline as pipeline_binary  # noqa: F401  Defines its flags.

    with flagsaver.flagsaver(profile="quick", data_dir="x"):
        config = cf.attack_config()
    expected = attack.AttackConfig.for_profile("quick", data_dir="x")
    assert config == expected
    for key, value in attack.PROFILES["quick"].items():
        assert getattr(config, key) == value, key
    with flagsaver.flagsaver(profile="quick", data_dir="x", max_len=50):
        assert cf.attack_config().max_len == 50
    with flagsaver.flagsaver(profile="paper", dataset="imdb", data_dir="x"):
        assert cf.attack_config().max_len == attack.AttackConfig.max_len


def test_quick_profile_scans_with_its_variant_unless_one_is_given():
    from absl.testing import flagsaver

    from experiments import common_flags as cf
    from experiments import pipeline as pipeline_binary  # noqa: F401  Defines its flags.

    with flagsaver.flagsaver(profile="quick"):
        assert cf.bki_config().variant == attack.PROFILE_VARIANTS["quick"] == "refined"
    with flagsaver.flagsaver(profile="quick"), flagsaver.as_parsed(variant="paper"):
        assert cf.bki_config().variant == "paper"
    with flagsaver.flagsaver(profile="paper"):
        assert cf.bki_config().variant == "paper"
