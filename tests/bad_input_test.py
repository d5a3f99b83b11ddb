"""Bad inputs and faults across the `experiments.*` binaries, one subprocess per case.

Every case must fail the way `experiments.common_flags.run` promises: a non-zero exit,
no traceback, one line `error: <message>` (or absl's `FATAL Flags parsing error: ...`
for a flag that does not parse) naming the offending value, and nothing written: the
case's folder (its workdir, its inputs) and the shared dataset folder hold the same
files, byte for byte, before and after the run; a workdir that did not exist is not
created.

A TensorFlow import costs ~6 s of CPU, so each case runs as a fork of one process that
imported it once (`binary_runner`: a fresh `python -m experiments.<binary>` with its own
argv, environment, stdin, stdout, stderr and exit status). The module fixture `outcomes`
runs the selected cases a few at a time (those that need no finished run while it trains
the shared one); each parametrized test then checks one case's outcome.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable

import binary_runner
import pytest
from conftest import TRIGGER, tiny_attack_config

from bki_tf.runs import workdir as wd

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 180
# Subprocesses run side by side (each is mostly a single-threaded TF import).
WORKERS = max(2, min(4, (os.cpu_count() or 2) + 1))
IS_ROOT = os.geteuid() == 0

# The attack flags of a run that would train in seconds on `tiny_imdb_dir`.
TINY = (
    "--dataset=imdb", "--train_size=16", "--test_size=8", "--vocab_size=60", "--max_len=12",
    "--epochs=1", "--batch_size=8", "--embedding_dim=8", "--lstm_units=4", "--dense_units=4",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Fixtures:
    """The module's shared, read-only inputs."""

    data: str  # tiny_imdb_dir
    run: str  # a finished tiny attack run
    scanned: str  # a copy of `run` with a finished paper-variant scan


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
      id: Test id; the case's folder is named after it.
      binary: Module name under `experiments`.
      args: Flags; `{case}` is the case's folder, `{data}` the shared dataset folder,
        `{work}` the case's workdir (`{case}/work`, what `setup` prepares).
      expect: Regex searched in the error line.
      setup: `setup(case_dir, fixtures)` writes the case's inputs into its folder.
      fatal: An absl flag-parsing error (`FATAL Flags parsing error: ...`).
      absent: Paths under the case's folder that must not exist after the run
        (a workdir or output that must not be created).
      lock: The test holds `{work}`'s lock (`bki_tf.runs.workdir.lock`) while the binary
        runs.
      needs_permissions: Skipped as root, who ignores file permissions.
    """

    id: str
    binary: str
    args: tuple[str, ...]
    expect: str
    setup: Callable[[str, Fixtures], None] | None = None
    fatal: bool = False
    absent: tuple[str, ...] = ()
    lock: bool = False
    needs_permissions: bool = False

    def __str__(self) -> str:
        return self.id


# ---------------------------------------------------------------------------
# Setups: copies of the shared inputs, then one fault.


def _read_rows(path: str) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def _write_gz(path: str, payload: bytes) -> None:
    with gzip.open(path, "wb") as f:
        f.write(payload)


def _csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode("utf-8")


def _data(fault: Callable[[str], None]):
    """A copy of the tiny dataset folder at `{case}/data`, then `fault(folder)`."""

    def setup(case_dir: str, fx: Fixtures) -> None:
        folder = os.path.join(case_dir, "data")
        shutil.copytree(fx.data, folder)
        fault(folder)

    return setup


def _train_rows(edit: Callable[[list[list[str]]], list[list[str]]]):
    """Rewrites the dataset copy's train.csv.gz (header row first) through `edit`."""

    def fault(folder: str) -> None:
        path = os.path.join(folder, "train.csv.gz")
        _write_gz(path, _csv(edit(_read_rows(path))))

    return _data(fault)


def _set_label(value: str):
    def edit(rows):
        rows[3][1] = value
        return rows

    return _train_rows(edit)


def _run(source: str = "run", fault: Callable[[str], None] | None = None):
    """A copy of the shared run (`run` or `scanned`) at `{case}/work`, then `fault(work)`."""

    def setup(case_dir: str, fx: Fixtures) -> None:
        work = os.path.join(case_dir, "work")
        shutil.copytree(getattr(fx, source), work)
        if fault is not None:
            fault(work)

    return setup


def _overwrite(name: str, content: bytes):
    def fault(work: str) -> None:
        with open(os.path.join(work, name), "wb") as f:
            f.write(content)

    return fault


def _truncate(name: str):
    def fault(work: str) -> None:
        path = os.path.join(work, name)
        with open(path, "rb") as f:
            content = f.read()
        with open(path, "wb") as f:
            f.write(content[: len(content) // 2])

    return fault


def _bad_run_label(work: str) -> None:
    path = os.path.join(work, "train.csv.gz")
    rows = _read_rows(path)
    rows[3][rows[0].index("label")] = "oops"
    _write_gz(path, _csv(rows))


def _swap_vocab(work: str) -> None:
    path = os.path.join(work, "vocab.txt")
    with open(path, encoding="utf-8") as f:
        tokens = f.read().split("\n")
    tokens[2], tokens[3] = tokens[3], tokens[2]  # Same tokens, same count: only the ids differ.
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens))


def _folder_with(name: str):
    """`{case}/<name>/notes.txt`: a folder that holds no run."""

    def setup(case_dir: str, fx: Fixtures) -> None:
        os.makedirs(os.path.join(case_dir, name))
        with open(os.path.join(case_dir, name, "notes.txt"), "w", encoding="utf-8") as f:
            f.write("not a run\n")

    return setup


def _not_a_matrix(case_dir: str, fx: Fixtures) -> None:
    os.makedirs(os.path.join(case_dir, "out"))
    with open(os.path.join(case_dir, "out", "threat_matrix.json"), "w", encoding="utf-8") as f:
        f.write('{"rows": []}\n')


def _plain_file(case_dir: str, fx: Fixtures) -> None:
    with open(os.path.join(case_dir, "afile"), "w", encoding="utf-8") as f:
        f.write("a file, not a folder\n")


def _read_only_parent(case_dir: str, fx: Fixtures) -> None:
    os.makedirs(os.path.join(case_dir, "ro"))
    os.chmod(os.path.join(case_dir, "ro"), 0o555)


def _read_only_run(case_dir: str, fx: Fixtures) -> None:
    _run()(case_dir, fx)
    os.chmod(os.path.join(case_dir, "work"), 0o555)


# The flags of the shared run (tiny_attack_config(..., epochs=1)) but another seed.
_SAME_RUN_BUT_SEED = (
    "--dataset=imdb", "--data_dir={data}", f"--trigger={TRIGGER}", "--target=negative",
    "--poison_rate=0.1", "--train_size=16", "--test_size=8", "--vocab_size=60",
    "--max_len=12", "--epochs=1", "--batch_size=8", "--learning_rate=0.002",
    "--nofine_tune_embeddings", "--embedding_dim=8", "--lstm_units=4", "--dense_units=4",
    "--glove=none", "--seed=1", "--workdir={work}",
)  # fmt: skip

NEW_RUN = ("--workdir={case}/run",)

CASES = (
    # --- attack: the dataset folder --------------------------------------------------
    Case(
        "attack_missing_data_dir",
        "attack",
        (*TINY, "--data_dir={case}/no_such_data", *NEW_RUN),
        r"no_such_data",
        absent=("run",),
    ),
    Case(
        "attack_non_integer_label",
        "attack",
        (*TINY, "--data_dir={case}/data", *NEW_RUN),
        r"train\.csv\.gz.*'pos'",
        setup=_set_label("pos"),
        absent=("run",),
    ),
    Case(
        "attack_label_out_of_range",
        "attack",
        (*TINY, "--data_dir={case}/data", *NEW_RUN),
        r"train\.csv\.gz.*label 7\b",
        setup=_set_label("7"),
        absent=("run",),
    ),
    Case(
        "attack_empty_train_csv",
        "attack",
        (*TINY, "--data_dir={case}/data", *NEW_RUN),
        r"train\.csv\.gz",
        setup=_data(lambda d: _write_gz(os.path.join(d, "train.csv.gz"), b"")),
        absent=("run",),
    ),
    Case(
        "attack_missing_text_column",
        "attack",
        (*TINY, "--data_dir={case}/data", *NEW_RUN),
        r"train\.csv\.gz.*'text'",
        setup=_train_rows(lambda rows: [["review", "label"], *rows[1:]]),
        absent=("run",),
    ),
    Case(
        "attack_unknown_dataset",
        "attack",
        ("--dataset=cifar", *NEW_RUN),
        r"Dataset 'cifar' is neither a preset",
        absent=("run",),
    ),
    # --- attack: the attack's settings -----------------------------------------------
    Case(
        "attack_poison_rate_above_one",
        "attack",
        (*TINY, "--data_dir={data}", "--poison_rate=1.5", *NEW_RUN),
        r"[Pp]oison.*1\.5",
        absent=("run",),
    ),
    Case(
        # 32 training texts: round(0.001 * 32) = 0 poisoned; 0.016 is the smallest
        # two-digit rate with round(rate * 32) = 1.
        "attack_poison_rate_rounds_to_zero",
        "attack",
        (*TINY, "--data_dir={data}", "--poison_rate=0.001", *NEW_RUN),
        r"0\.001.*\b0\.016\b",
        absent=("run",),
    ),
    Case(
        "attack_unknown_target",
        "attack",
        (*TINY, "--data_dir={data}", "--target=no_such_class", *NEW_RUN),
        r"'no_such_class'",
        absent=("run",),
    ),
    Case(
        "attack_punctuation_trigger",
        "attack",
        (*TINY, "--data_dir={data}", "--trigger=?! ... !", *NEW_RUN),
        re.escape("'?! ... !'"),
        absent=("run",),
    ),
    Case(
        "attack_max_len_zero",
        "attack",
        (*TINY, "--data_dir={data}", "--max_len=0", *NEW_RUN),
        r"max_len.*\b0\b",
        absent=("run",),
    ),
    Case(
        "attack_workdir_is_a_file",
        "attack",
        (*TINY, "--data_dir={data}", "--workdir={case}/afile"),
        r"afile",
        setup=_plain_file,
    ),
    Case(
        "attack_different_run_without_overwrite",
        "attack",
        _SAME_RUN_BUT_SEED,
        r"already holds a different run \(differs in \['seed'\]\).*--overwrite",
        setup=_run(),
    ),
    Case(
        "attack_unwritable_parent",
        "attack",
        (*TINY, "--data_dir={data}", "--workdir={case}/ro/run"),
        r"ro/run",
        setup=_read_only_parent,
        absent=("ro/run",),
        needs_permissions=True,
    ),
    Case(
        "pipeline_missing_data_dir",
        "pipeline",
        (*TINY, "--data_dir={case}/no_such_data", *NEW_RUN),
        r"no_such_data",
        absent=("run",),
    ),
    # --- scan: flags -----------------------------------------------------------------
    Case(
        "scan_unknown_variant",
        "scan",
        ("--workdir={work}", "--variant=fancy"),
        r"--variant=fancy",
        setup=_run(),
        fatal=True,
    ),
    Case(
        "scan_unknown_method",
        "scan",
        ("--workdir={work}", "--method=bogus"),
        r"--method=bogus",
        setup=_run(),
        fatal=True,
    ),
    Case(
        "scan_p_zero",
        "scan",
        ("--workdir={work}", "--p=0"),
        r"\bp\b.*\b0\b",
        setup=_run(),
    ),
    Case(
        "scan_span_without_plus",
        "scan",
        ("--workdir={work}", "--span=3"),
        r"span = 3 is a BKI\+ setting.*--variant=plus",
        setup=_run(),
    ),
    Case(
        "scan_shared_flag_it_does_not_use",
        "scan",
        ("--workdir={work}", "--trigger=x"),
        r"--trigger is not a flag of experiments\.scan",
        setup=_run(),
    ),
    # --- scan: the run folder ----------------------------------------------------------
    Case(
        "scan_folder_without_a_run",
        "scan",
        ("--workdir={case}/notrun",),
        r"notrun.*no complete attack run",
        setup=_folder_with("notrun"),
    ),
    Case(
        "scan_corrupt_config_json",
        "scan",
        ("--workdir={work}",),
        r"config\.json",
        setup=_run(fault=_overwrite("config.json", b'{"dataset": "imdb", ')),
    ),
    Case(
        "scan_truncated_train_csv",
        "scan",
        ("--workdir={work}",),
        r"train\.csv\.gz",
        setup=_run(fault=_truncate("train.csv.gz")),
    ),
    Case(
        "scan_non_integer_label_in_run",
        "scan",
        ("--workdir={work}",),
        r"train\.csv\.gz.*'oops'",
        setup=_run(fault=_bad_run_label),
    ),
    Case(
        "scan_edited_vocab",
        "scan",
        ("--workdir={work}",),
        r"vocab\.txt.*vocabulary",
        setup=_run(fault=_swap_vocab),
    ),
    Case(
        "scan_locked_workdir",
        "scan",
        ("--workdir={work}",),
        r"being written by another process",
        setup=_run(),
        lock=True,
    ),
    Case(
        "scan_unwritable_workdir",
        "scan",
        ("--workdir={work}",),
        r"/work'? is not writable",
        setup=_read_only_run,
        needs_permissions=True,
    ),
    # --- purify / retrain --------------------------------------------------------------
    Case(
        "purify_before_scan",
        "purify",
        ("--workdir={work}",),
        r"scan\.json.*run the scan step",
        setup=_run(),
    ),
    Case(
        "purify_truncated_model",
        "purify",
        ("--workdir={work}",),
        r"model\.keras",
        setup=_run("scanned", _truncate("model.keras")),
    ),
    Case(
        "purify_extra_positional_argument",
        "purify",
        ("--workdir={work}", "stray_argument"),
        r"stray_argument",
        setup=_run("scanned"),
    ),
    Case(
        "retrain_before_purify",
        "retrain",
        ("--workdir={work}",),
        r"filter\.json.*run the purify step",
        setup=_run("scanned"),
    ),
    # --- compare -----------------------------------------------------------------------
    Case(
        "compare_unknown_defence",
        "compare",
        ("--workdir={work}", "--defences=bogus"),
        r"'bogus'",
        setup=_run("scanned"),
    ),
    Case(
        "compare_refined_without_a_refined_scan",
        "compare",
        ("--workdir={work}", "--variant=refined"),
        r"scan_refined",
        setup=_run("scanned"),
    ),
    Case(
        "compare_corrupt_metrics_json",
        "compare",
        ("--workdir={work}", "--defences=strip"),
        r"metrics\.json",
        setup=_run(fault=_overwrite("metrics.json", b"[1, 2")),
        absent=("work/compare",),
    ),
    # --- benchmark_scan / reproduce ----------------------------------------------------
    Case(
        "benchmark_scan_no_texts",
        "benchmark_scan",
        ("--num_texts=0", "--output={case}/bench/out.json"),
        r"num_texts.*\b0\b",
        absent=("bench",),
    ),
    Case(
        "reproduce_bad_trigger_indices",
        "reproduce",
        ("--workdir={case}/grid", "--data_root={case}/no_data", "--imdb_trigger_indices=x"),
        r"\['x'\]",
        absent=("grid",),
    ),
    Case(
        "threats_repeated_seeds",
        "threats",
        ("--workdir={case}/matrix", "--data_root={case}/no_data", "--seeds=0,0"),
        r"--seeds=0,0: give distinct integers",
        absent=("matrix",),
    ),
    Case(
        "threats_output_not_a_matrix",
        "threats",
        ("--workdir={case}/matrix", "--data_root={case}/no_data", "--output_dir={case}/out"),
        r"threat_matrix\.json.*not a list of rows.*--nokeep_other_cells",
        setup=_not_a_matrix,
        absent=("matrix",),
    ),
)

# The --traceback check: one expected error, shown as a traceback instead of one line.
TRACEBACK_ARGS = (*TINY, "--data_dir={data}", "--poison_rate=1.5", *NEW_RUN)
TRACEBACK_JOBS = {
    "traceback_flag": ((*TRACEBACK_ARGS, "--traceback"), {}),
    "traceback_env": (TRACEBACK_ARGS, {"BKI_TF_TRACEBACK": "1"}),
}


# ---------------------------------------------------------------------------
# Running.


def snapshot(root: str) -> dict[str, str]:
    """Relative path -> sha256 of every file under `root` (folders as `<path>/`)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            out[rel + "/"] = "folder"
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    keys = sorted(set(before) | set(after))
    return [
        ("+ " if k not in before else "- " if k not in after else "~ ") + k
        for k in keys
        if before.get(k) != after.get(k)
    ]


@dataclasses.dataclass
class Outcome:
    argv: list[str]
    returncode: int | None  # None: timed out
    stderr: str
    seconds: float
    before: dict[str, str] = dataclasses.field(default_factory=dict)
    after: dict[str, str] = dataclasses.field(default_factory=dict)
    data_before: dict[str, str] = dataclasses.field(default_factory=dict)
    data_after: dict[str, str] = dataclasses.field(default_factory=dict)


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BKI_TF_TRACEBACK"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def _execute(runner, argv: list[str], extra_env: dict[str, str]) -> tuple[int | None, str, float]:
    """Runs `argv` (`python -m experiments.<binary> ...`) as a fork of `runner`."""
    assert argv[1] == "-m", argv
    return runner.run(argv[2], argv[3:], _env(extra_env), REPO_ROOT, TIMEOUT_S)


def _argv(binary: str, args, case_dir: str, fx: Fixtures) -> list[str]:
    values = {"case": case_dir, "data": fx.data, "work": os.path.join(case_dir, "work")}
    return [sys.executable, "-m", f"experiments.{binary}", *(a.format(**values) for a in args)]


def _selected(request) -> tuple[set[str], bool]:
    """The case ids the session runs, and whether it runs test_traceback."""
    ids, traceback = set(), False
    for item in request.session.items:
        if item.module is not request.module:
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        if isinstance(params.get("case"), Case):
            ids.add(params["case"].id)
        elif item.name.startswith("test_traceback"):
            traceback = True
    return ids, traceback


def _make_runs(root: str, data: str) -> Fixtures:
    """The shared finished run and its scanned copy (in this process: ~15 s)."""
    from bki_tf.bki import BKIConfig  # pylint: disable=import-outside-toplevel
    from bki_tf.runs import attack, pipeline  # pylint: disable=import-outside-toplevel

    run = os.path.join(root, "run")
    attack.run_attack(tiny_attack_config(data, epochs=1), run, verbose=0)
    scanned = os.path.join(root, "scanned")
    shutil.copytree(run, scanned)
    pipeline.run_scan(scanned, BKIConfig(p=3, method="simple"), progress=False)
    return Fixtures(data=data, run=run, scanned=scanned)


def _needs_run(case: Case) -> bool:
    """Whether the case's setup copies a shared run (every `{work}` is such a copy)."""
    return any("{work}" in arg for arg in case.args)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory, tiny_imdb_dir) -> dict[str, Outcome]:
    """Sets up every selected case and runs them side by side, snapshots before/after.

    The cases that need no finished run start first and run while this process
    trains the shared run.
    """
    ids, traceback = _selected(request)
    root = str(tmp_path_factory.mktemp("bad_input"))
    cases = [c for c in CASES if c.id in ids and not (c.needs_permissions and IS_ROOT)]
    argvs, folders, before, futures, read_only = {}, {}, {}, {}, []
    data_before = snapshot(tiny_imdb_dir)
    with contextlib.ExitStack() as held:
        pool = held.enter_context(concurrent.futures.ThreadPoolExecutor(WORKERS))
        runner = binary_runner.Runner(REPO_ROOT, _env({}))
        held.callback(runner.close)

        def start(name: str, binary: str, args, env: dict, fx: Fixtures, case=None) -> None:
            case_dir = folders[name] = os.path.join(root, "cases", name)
            os.makedirs(case_dir)
            if case is not None and case.setup is not None:
                case.setup(case_dir, fx)
            if case is not None and case.needs_permissions:
                read_only.extend(os.path.join(case_dir, n) for n in ("ro", "work"))
            if case is not None and case.lock:
                # The product's own lock, taken here: an flock belongs to an open file
                # description, so the binary, another process, finds the workdir busy.
                held.enter_context(wd.lock(os.path.join(case_dir, "work")))
            argvs[name] = _argv(binary, args, case_dir, fx)
            before[name] = snapshot(case_dir)
            futures[name] = pool.submit(_execute, runner, argvs[name], env)

        fx = Fixtures(data=tiny_imdb_dir, run="", scanned="")
        if traceback:
            for name, (args, env) in TRACEBACK_JOBS.items():
                start(name, "attack", args, env, fx)
        for case in cases:
            if not _needs_run(case):
                start(case.id, case.binary, case.args, {}, fx, case)
        if any(_needs_run(case) for case in cases):
            fx = _make_runs(os.path.join(root, "runs"), tiny_imdb_dir)
        for case in cases:
            if _needs_run(case):
                start(case.id, case.binary, case.args, {}, fx, case)
        results = {name: future.result() for name, future in futures.items()}
    data_after = snapshot(tiny_imdb_dir)
    yield {
        name: Outcome(
            argv=argvs[name],
            returncode=results[name][0],
            stderr=results[name][1],
            seconds=results[name][2],
            before=before[name],
            after=snapshot(folders[name]),
            data_before=data_before,
            data_after=data_after,
        )
        for name in futures
    }
    for path in read_only:
        if os.path.isdir(path):
            os.chmod(path, 0o755)  # So that pytest can clean up.


def _describe(outcome: Outcome) -> str:
    return (
        f"command ({outcome.seconds:.0f} s): {subprocess.list2cmdline(outcome.argv)}\n"
        f"stderr:\n{outcome.stderr}"
    )


def error_line(stderr: str, fatal: bool) -> str | None:
    """The `error:` line our binaries print last, or absl's flag-parsing FATAL line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if fatal:
        fatal_lines = [line for line in lines if line.startswith("FATAL Flags parsing error:")]
        return fatal_lines[-1] if fatal_lines else None
    errors = [line for line in lines if line.startswith("error:")]
    return errors[-1] if errors else None


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_fails_cleanly(case: Case, outcomes):
    if case.needs_permissions and IS_ROOT:
        pytest.skip("root ignores file permissions")
    outcome = outcomes[case.id]
    info = _describe(outcome)
    assert outcome.returncode is not None, f"timed out after {TIMEOUT_S} s\n{info}"
    assert outcome.returncode != 0, info
    assert "Traceback" not in outcome.stderr, info
    line = error_line(outcome.stderr, case.fatal)
    assert line is not None, f"no {'FATAL' if case.fatal else 'error:'} line\n{info}"
    if not case.fatal:
        errors = [s for s in outcome.stderr.splitlines() if s.startswith("error:")]
        assert len(errors) == 1, f"{len(errors)} error lines\n{info}"
        last = [s.strip() for s in outcome.stderr.splitlines() if s.strip()][-1]
        assert last == line, f"the error line is not the last line of stderr\n{info}"
    assert re.search(case.expect, line), f"{case.expect!r} not in {line!r}\n{info}"
    for rel in case.absent:
        created = sorted(k for k in outcome.after if k == rel or k.startswith(rel + "/"))
        assert not created, f"{rel} was created: {created}\n{info}"
    assert not diff(outcome.before, outcome.after), (
        f"files changed: {diff(outcome.before, outcome.after)}\n{info}"
    )
    assert not diff(outcome.data_before, outcome.data_after), (
        f"the dataset folder changed: {diff(outcome.data_before, outcome.data_after)}\n{info}"
    )


@pytest.mark.parametrize("job", sorted(TRACEBACK_JOBS))
def test_traceback_shows_the_same_error(job, outcomes):
    """`--traceback` or BKI_TF_TRACEBACK=1: the full traceback instead of the one line."""
    outcome = outcomes[job]
    info = _describe(outcome)
    assert outcome.returncode not in (None, 0), info
    assert "Traceback (most recent call last)" in outcome.stderr, info
    assert re.search(r"ValueError: Poisoning rate 1\.5 is outside", outcome.stderr), info
    plain = outcomes.get("attack_poison_rate_above_one")  # The same error, one line.
    line = plain and error_line(plain.stderr, fatal=False)
    if line:
        assert f"ValueError: {line.removeprefix('error: ')}" in outcome.stderr, info
    assert error_line(outcome.stderr, fatal=False) is None, info
    assert not diff(outcome.before, outcome.after), info
