"""Tests for bki_tf.runs.workdir and the run folder's reliability guarantees."""

import fcntl
import os
import shutil
import stat
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from conftest import REPO_ROOT, tiny_attack_config

from bki_tf import artifacts, bki, poisoning
from bki_tf.runs import attack, pipeline
from bki_tf.runs import workdir as wd


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_imdb_dir):
    """A tiny run with both variants' scans, filters and retrainings."""
    workdir = str(tmp_path_factory.mktemp("workdir") / "run")
    config = tiny_attack_config(tiny_imdb_dir, poison_rate=0.15, max_len=24, epochs=2)
    for variant in ("paper", "refined"):
        pipeline.run_pipeline(
            config, bki.BKIConfig(p=3, variant=variant, alpha=0.5), workdir, verbose=0
        )
    return workdir, config


def test_layout_names_every_derived_output():
    names = wd.derived_outputs()
    for expected in ("scan", "scan_refined", "filter_refined", "retrain_refined",
                     "report_refined.json", "report_refined.md", "model.keras", "compare"):  # fmt: skip
        assert expected in names
    assert wd.CONFIG_FILE not in names
    with pytest.raises(ValueError, match="Unknown BKI variant"):
        wd.layout("best")


def test_overwrite_clears_every_derived_output_of_the_old_run(finished, tmp_path):
    workdir, config = finished
    copy = str(tmp_path / "copy")
    shutil.copytree(workdir, copy)
    for name in ("scan_refined", "filter_refined", "retrain_refined", "report_refined.json"):
        assert os.path.exists(os.path.join(copy, name)), name
    other = tiny_attack_config(config.data_dir, poison_rate=0.15, max_len=24, epochs=2, seed=5)
    attack.run_attack(other, copy, overwrite=True, verbose=0)
    left = set(os.listdir(copy))
    assert not left & {"scan", "scan_refined", "filter", "filter_refined", "retrain",
                       "retrain_refined", "report.json", "report_refined.json",
                       "report_refined.md"}  # fmt: skip
    assert attack.is_complete(copy)


def test_a_second_writer_is_refused_with_one_clear_error(finished, tmp_path):
    """Another process holds the workdir: the scan stops at once and writes nothing."""
    workdir, _ = finished
    copy = str(tmp_path / "copy")
    shutil.copytree(workdir, copy)
    shutil.rmtree(os.path.join(copy, "scan"))
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, os, sys, time
            fd = os.open({copy!r}, os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = sorted(os.listdir(copy))
        with pytest.raises(wd.WorkdirBusyError, match="another process"):
            pipeline.run_scan(copy, bki.BKIConfig(p=3), progress=False)
        with pytest.raises(wd.WorkdirBusyError, match="another process"):
            attack.run_attack(
                tiny_attack_config(_data_dir(copy), seed=9, max_len=24), copy, overwrite=True
            )
        assert sorted(os.listdir(copy)) == before
    finally:
        holder.kill()
        holder.wait()
    # Once the other process is gone (even killed), the lock is free again.
    assert pipeline.run_scan(copy, bki.BKIConfig(p=3), progress=False).keyword


def _data_dir(workdir):
    return artifacts.read_json(os.path.join(workdir, "config.json"))["data_dir"]


def test_two_concurrent_scans_never_mix(finished, tmp_path):
    """Two processes scan one workdir at once: one succeeds, the other is refused."""
    workdir, _ = finished
    copy = str(tmp_path / "copy")
    shutil.copytree(workdir, copy)
    for name in ("scan", "scan_refined", "filter", "filter_refined"):
        shutil.rmtree(os.path.join(copy, name))
    cmd = [sys.executable, "-m", "experiments.scan", f"--workdir={copy}", "--p=3"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [
        subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    busy = [err for code, err in results if code != 0]
    # Either they overlapped (one refused) or ran one after the other (both resumed).
    assert codes in ([0, 2], [0, 0]), results
    for err in busy:
        assert "being written by another process" in err and "Traceback" not in err
    record = pipeline.read_scan(copy)
    assert record.keyword == pipeline.read_scan(workdir).keyword


def test_weights_fingerprint_ignores_the_save_date(finished, tmp_path):
    workdir, _ = finished
    model = artifacts.load_model(os.path.join(workdir, "model.keras"))
    a, b = str(tmp_path / "a.keras"), str(tmp_path / "b.keras")
    artifacts.save_model(model, a)
    artifacts.save_model(model, b)
    assert wd.weights_sha256(artifacts.load_model(a)) == wd.weights_sha256(model)
    assert wd.weights_sha256(artifacts.load_model(b)) == wd.weights_sha256(model)
    assert attack.load_result(workdir).weights_sha256 == wd.weights_sha256(model)
    changed = keras.models.clone_model(model)
    changed.set_weights([w + 1e-3 for w in model.get_weights()])
    assert wd.weights_sha256(changed) != wd.weights_sha256(model)


def test_model_save_is_atomic_and_files_get_the_umask_mode(finished, tmp_path, monkeypatch):
    workdir, _ = finished
    model = artifacts.load_model(os.path.join(workdir, "model.keras"))
    path = str(tmp_path / "model.keras")
    artifacts.save_model(model, path)
    good = open(path, "rb").read()

    def dies_half_way(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", dies_half_way)
    with pytest.raises(OSError, match="No space"):
        artifacts.save_model(model, path)
    assert open(path, "rb").read() == good  # The old file, whole.
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []
    mask = os.umask(0)
    os.umask(mask)
    for name in ("config.json", "metrics.json", "train.csv.gz", "vocab.txt", "model.keras"):
        mode = stat.S_IMODE(os.stat(os.path.join(workdir, name)).st_mode)
        assert mode == 0o666 & ~mask, (name, oct(mode))


def test_truncated_model_names_the_file(finished, tmp_path):
    workdir, _ = finished
    copy = str(tmp_path / "copy")
    shutil.copytree(workdir, copy)
    path = os.path.join(copy, "model.keras")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(artifacts.CorruptFileError, match="model.keras' is corrupt"):
        attack.load_run(copy)


def test_run_identity_is_normalised(finished, tmp_path):
    """`--target=0` vs its name, and relative vs absolute paths, are the same run."""
    workdir, config = finished
    stored = artifacts.read_json(os.path.join(workdir, "config.json"))
    same = attack.check_workdir(workdir, {**stored, "target": "0"}, overwrite=False)
    assert same
    rel = os.path.relpath(config.data_dir)
    assert attack.check_workdir(workdir, {**stored, "data_dir": rel}, overwrite=False)
    with pytest.raises(ValueError, match=r"differs in \['target'\]"):
        attack.check_workdir(workdir, {**stored, "target": "1"}, overwrite=False)


def test_a_rate_that_poisons_nothing_is_refused_with_the_smallest_rate():
    config = poisoning.PoisonConfig(trigger="cf mn", target=0, rate=0.01, max_len=20)
    texts = [f"text {i}" for i in range(40)]
    labels = np.array([0, 1] * 20)
    smallest = poisoning.smallest_rate(40, "replace")
    with pytest.raises(ValueError, match=f"poisons 0 of 40.*smallest rate .* is {smallest}"):
        poisoning.poison_dataset(texts, labels, config, 2)
    ok = poisoning.PoisonConfig(trigger="cf mn", target=0, rate=smallest, max_len=20)
    assert poisoning.poison_dataset(texts, labels, ok, 2).num_poisoned == 1
    for n in (7, 33, 999, 10000):
        for mode in ("replace", "append"):
            rate = poisoning.smallest_rate(n, mode)
            assert poisoning.num_to_poison(n, rate, mode) >= 1
            assert poisoning.num_to_poison(n, rate * 0.9, mode) == 0


def test_a_csv_with_a_byte_order_mark_is_read(tmp_path):
    from bki_tf import data

    path = tmp_path / "train.csv"
    path.write_bytes("\ufefftext,label\nfine film,1\n".encode())
    texts, labels = data.read_csv(str(path), 2)
    assert texts == ["fine film"] and labels.tolist() == [1]


def test_an_unwritable_workdir_fails_before_any_work(finished, tmp_path, monkeypatch):
    workdir, _ = finished
    copy = str(tmp_path / "copy")
    shutil.copytree(workdir, copy)
    shutil.rmtree(os.path.join(copy, "scan"))
    monkeypatch.setattr(
        os, "access", lambda path, mode: os.path.realpath(path) != os.path.realpath(copy)
    )

    def must_not_load(*args, **kwargs):
        raise AssertionError("the scan loaded the run before checking the workdir")

    monkeypatch.setattr(attack, "load_run", must_not_load)
    with pytest.raises(PermissionError, match="not writable"):
        pipeline.run_scan(copy, bki.BKIConfig(p=3), progress=False)


def test_flock_is_per_open_folder(tmp_path):
    """The lock primitive: a second open of the folder cannot take it."""
    folder = str(tmp_path)
    with wd.lock(folder):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        with wd.lock(folder):  # Re-entrant in the holding process.
            pass
    assert os.listdir(folder) == []  # No lock file is left behind.
