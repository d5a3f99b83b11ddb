"""Runs `python -m experiments.<binary>` for the tests without a TensorFlow import each.

A test starts `Runner()`: one child process imports TensorFlow and the package once,
then forks once per job. Each fork is a fresh `python -m experiments.<binary>`: its own
argv, environment, working folder, stdin from /dev/null, stdout and stderr to a file, and
the exit status the binary's `sys.exit` gives. A binary still pays its own work, not the
~6 s of CPU an import of TensorFlow costs.

Protocol (JSON lines): the test writes `{"id", "module", "args", "env", "cwd", "out",
"err"}` to
the child's stdin; the child answers `{"id", "pid"}` when the fork starts and `{"id",
"returncode"}` when it ends.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import json
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

# Imported once, before any fork: the expensive part of every binary's start.
PRELOAD = (
    "tensorflow",
    "keras",
    "absl.app",
    "bki_tf",
    "bki_tf.runs.pipeline",
    "experiments.common_flags",
)


def _child(job: dict) -> None:
    """In the fork: becomes `python -m <module> <args>`; never returns."""
    code = 1
    try:
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        out, err = os.open(job["out"], flags, 0o644), os.open(job["err"], flags, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        # Fresh text streams: the parent's may have been locked by another thread at fork.
        sys.stdin = open(0, encoding="utf-8", closefd=False)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False, buffering=1)
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False, buffering=1)
        sys.argv = [job["module"], *job["args"]]
        try:
            runpy.run_module(job["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:  # pylint: disable=broad-except
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)  # pylint: disable=protected-access


def serve() -> None:
    """The child's loop: one fork per job line on stdin."""
    # As `python -m` from the working folder: that folder first, not this file's.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.getcwd()] + [p for p in sys.path if os.path.abspath(p or ".") != here]
    for name in PRELOAD:
        importlib.import_module(name)
    lock = threading.Lock()

    def reply(message: dict) -> None:
        with lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def wait(job_id: str, pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        reply({"id": job_id, "returncode": os.waitstatus_to_exitcode(status)})

    reply({"ready": True})
    for line in sys.stdin:
        job = json.loads(line)
        with lock:  # No fork while a reply is half written.
            pid = os.fork()
        if pid == 0:
            _child(job)
        reply({"id": job["id"], "pid": pid})
        threading.Thread(target=wait, args=(job["id"], pid), daemon=True).start()


class Runner:
    """The test side: `run(module, args, env, cwd, timeout)` -> (returncode, stderr, seconds)."""

    def __init__(self, repo_root: str, env: dict[str, str]):
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)],
            cwd=repo_root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()
        self._pending: dict[str, concurrent.futures.Future] = {}
        self._pids: dict[str, int] = {}
        self._folder = tempfile.mkdtemp(prefix="binary_runner_")
        self._count = 0
        first = self._proc.stdout.readline()
        if not first or not json.loads(first).get("ready"):
            raise RuntimeError(f"binary_runner did not start (exit {self._proc.poll()}).")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            message = json.loads(line)
            with self._lock:
                if "pid" in message:
                    self._pids[message["id"]] = message["pid"]
                else:
                    self._pending.pop(message["id"]).set_result(message["returncode"])
        with self._lock:  # The runner died: nothing more will answer.
            for future in self._pending.values():
                future.set_exception(RuntimeError("binary_runner exited"))

    def run(
        self, module: str, args, env: dict[str, str], cwd: str, timeout: float
    ) -> tuple[int | None, str, float]:
        start = time.monotonic()
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._count += 1
            job_id = str(self._count)
            out = os.path.join(self._folder, f"{job_id}.out")
            err = os.path.join(self._folder, f"{job_id}.err")
            self._pending[job_id] = future
            job = {"id": job_id, "module": module, "args": list(args), "env": env}
            job.update(cwd=cwd, out=out, err=err)
            self._proc.stdin.write(json.dumps(job) + "\n")
            self._proc.stdin.flush()
        try:
            code = future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            with self._lock:
                pid = self._pids.get(job_id)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            code = None
        with open(err, encoding="utf-8", errors="replace") as f:
            stderr = f.read()
        return code, stderr, time.monotonic() - start

    def close(self) -> None:
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()


if __name__ == "__main__":
    serve()
