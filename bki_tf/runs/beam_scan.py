"""The BKI scan on Apache Beam: many workers, the single-machine result bit for bit.

Scoring is independent per text and the dictionary is a sum, so the scan maps onto
Beam directly:

1. The driver loads the run, resolves the scan settings and stages what the workers
   need in `<staging_dir>/beam_inputs/` (the model file, the token ids and lengths,
   the labels and the vocabulary): workers read them, and write their checkpoints and
   outputs, through Beam's `FileSystems`, so a cloud path works on a cluster.
2. The plan (`bki_tf.runs.chunks`) cuts the texts into the checkpoint groups of the
   in-process scan. `_ScoreGroups` loads the model once per worker (`setup`, never
   pickled), scores a group with the same scorer and writes its checkpoint
   `chunks/<kind>-<g>.npz`, the same file the in-process scan writes, so per-text
   scores are bit-identical on the same platform and a failed job resumes from the
   groups already written (by either engine).
3. Each text's suspicious words and dictionary updates (`keywords.text_candidates`)
   feed a `CombinePerKey` whose accumulator is an integer count and an exact
   fixed-point sum (`keywords.fixed_point`): order-independent, the in-process
   dictionary bit for bit. The keyword is the best entry (`CombineGlobally`);
   flagging is a second pass with the keyword as a side input.
4. The driver reads the outputs back and writes the in-process scan's files
   (`scan.json`, `scan.md`, `scores.npz`) through `pipeline.write_scan`, plus
   `beam.json` (`BeamScanInfo`: runner, wall time, per-group seconds).

The core package never imports this module (nor Beam): it needs the `beam` extra
(`pip install -e ".[beam]"`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from bki_tf import artifacts
from bki_tf.bki import detector, keywords
from bki_tf.bki.detector import BKIConfig
from bki_tf.runs import chunks, pipeline
from bki_tf.runs import workdir as wd

INPUTS_DIR = "beam_inputs"
OUTPUTS_DIR = "beam_outputs"
INFO_FILE = "beam.json"
_METRICS_NAMESPACE = "bki_tf.beam_scan"


@dataclasses.dataclass(frozen=True)
class BeamScanInfo:
    """How a Beam scan ran (`beam.json` beside `scan.json`).

    Attributes:
      runner: The Beam runner's name.
      pipeline_options: The options the pipeline ran with.
      tf_threads: TensorFlow intra/inter-op threads per worker (None: TF's default).
      groups: Checkpoint groups per kind.
      resumed_units: Scoring units (texts, or their pieces) read back from checkpoints
        instead of scored.
      group_seconds: Per kind, the seconds each group's scoring took (in plan order;
        resumed groups keep the seconds of the run that scored them).
      group_texts: Per kind, the number of texts of each group.
      pipeline_seconds: Wall time of the Beam pipeline.
      wall_seconds: The whole call (staging, pipeline, assembling the files).
    """

    runner: str
    pipeline_options: dict
    tf_threads: int | None
    groups: dict
    resumed_units: int
    group_seconds: dict
    group_texts: dict
    pipeline_seconds: float
    wall_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BeamScanInfo:
        return artifacts.dataclass_from_dict(cls, d, "Beam scan info")


def check_pipeline_args(args: Sequence[str]) -> list[str]:
    """`args` if each is a `--name[=value]` Beam pipeline option, else ValueError naming it."""
    args = list(args)
    known = set(PipelineOptions(args).get_all_options(drop_default=False))
    for arg in args:
        name = arg.split("=", 1)[0].lstrip("-")
        if not arg.startswith("--") or name.replace("-", "_") not in known:
            raise ValueError(
                f"Unknown flag {arg!r}: neither a flag of experiments.beam_scan (see --help) "
                "nor a Beam pipeline option."
            )
    return args


def _join(*parts: str) -> str:
    return FileSystems.join(*parts)


def _read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as f:
        return f.read()


def _write_bytes(path: str, data: bytes) -> None:
    """Writes `path` whole: a temporary name, then a rename (no half-written file)."""
    tmp = f"{path}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    with FileSystems.create(tmp) as f:
        f.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


# The staged inputs of the latest job this worker process saw, shared by its DoFns.
_INPUTS: dict = {}


def _load_inputs(stage: str) -> dict:
    """The staged inputs, read once per worker process and job (callers must not modify them).

    `job.json` carries a fresh `run_id` per job, so a later job staged at the same
    path is never served the previous job's arrays.
    """
    job_bytes = _read_bytes(_join(stage, "job.json"))
    key = (stage, job_bytes)
    if key not in _INPUTS:
        with np.load(io.BytesIO(_read_bytes(_join(stage, "inputs.npz")))) as stored:
            inputs = {k: stored[k] for k in stored.files}
        inputs["vocabulary"] = _read_bytes(_join(stage, "vocab.txt")).decode("utf-8").split("\n")
        inputs["job"] = json.loads(job_bytes.decode("utf-8"))
        _INPUTS.clear()
        _INPUTS[key] = inputs
    return _INPUTS[key]


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError:
        pass  # TF already started in this process (in-process runner): keep its pools.


class _ScoreGroups(beam.DoFn):
    """Scores checkpoint groups: `(kind, group)` -> `(text index, (kind, scores))`.

    The model is loaded once per worker in `setup`; a group whose checkpoint already
    exists (same plan digest and texts) is read back instead of scored.
    """

    def __init__(self, stage: str, chunk_dir: str):
        self._stage = stage
        self._chunk_dir = chunk_dir

    def setup(self):
        from bki_tf.runs import external  # pylint: disable=import-outside-toplevel

        inputs = _load_inputs(self._stage)
        job = inputs["job"]
        _set_threads(job["tf_threads"])
        local = tempfile.mkdtemp(prefix="bki_beam_")
        model_path = os.path.join(local, "model.keras")
        with open(model_path, "wb") as f:
            f.write(_read_bytes(_join(self._stage, "model.keras")))
        model = external.load_user_model(model_path, job["custom_objects"])
        shutil.rmtree(local, ignore_errors=True)
        config = BKIConfig(**job["config"])
        self._ids = inputs["ids"]
        self._lengths = inputs["lengths"]
        self._scorers, self._plans = {}, {}
        for kind, digest in job["digests"].items():
            scorer = chunks.make_scorer(model, kind, config)
            plan = chunks.score_plan(
                scorer, kind, config, job["identity"], self._lengths, job["checkpoint_texts"]
            )
            if plan.digest != digest:
                raise ValueError(
                    f"This worker's {kind} plan differs from the driver's: the worker runs "
                    "another bki_tf or TensorFlow version; install the driver's on every worker."
                )
            self._scorers[kind], self._plans[kind] = scorer, plan
        self._scored = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "texts_scored")
        self._resumed = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "units_resumed")

    def process(self, element):
        kind, group = element
        plan = self._plans[kind]
        path = _join(self._chunk_dir, plan.chunk_name(group))
        stored = None
        if FileSystems.exists(path):
            stored = chunks.parse_chunk(io.BytesIO(_read_bytes(path)), plan, group)
        if stored is not None:
            texts, flat_scores, _ = stored
            values = detector.split_flat(flat_scores, self._lengths[texts])
            self._resumed.inc(len(plan.groups[group]))
        else:
            texts, values, seconds = chunks.score_group(
                self._scorers[kind], self._ids, self._lengths, plan, group
            )
            _write_bytes(path, chunks.chunk_bytes(plan, texts, values, seconds))
            self._scored.inc(len(texts))
        for i, v in zip(texts.tolist(), values):
            yield i, (kind, np.asarray(v, np.float32))


class _Candidates(beam.DoFn):
    """`(text index, scores)` -> `(text index, suspicious words, updates, keys)`."""

    def __init__(self, stage: str):
        self._stage = stage

    def setup(self):
        inputs = _load_inputs(self._stage)
        self._ids = inputs["ids"]
        self._lengths = inputs["lengths"]
        self._labels = inputs["labels"]
        self._vocabulary = inputs["vocabulary"]
        self._config = BKIConfig(**inputs["job"]["config"])

    def process(self, element):
        i, by_kind = element
        by_kind = dict(by_kind)
        config = self._config
        ids = self._ids[i, : self._lengths[i]].astype(np.int64)
        local = by_kind.get("prefix")
        text = keywords.text_candidates(
            ids,
            by_kind["deletion"].astype(np.float64),
            self._vocabulary,
            config.p,
            config.variant,
            None if local is None else local.astype(np.float64),
            int(self._labels[i]),
            config.min_ngram,
            config.max_ngram,
        )
        yield i, text.suspicious, text.updates, sorted(text.keys)


class _ExactSum(beam.CombineFn):
    """`(count, fixed-point sum)` of float values: exact, order- and grouping-free."""

    def create_accumulator(self):
        return 0, 0

    def add_input(self, accumulator, value):
        return accumulator[0] + 1, accumulator[1] + keywords.fixed_point(value)

    def merge_accumulators(self, accumulators):
        count, total = 0, 0
        for c, t in accumulators:
            count, total = count + c, total + t
        return count, total

    def extract_output(self, accumulator):
        return accumulator


def _best(items) -> tuple | None:
    """The best `(rank key, key)` (smallest rank key), None when there is none."""
    best = None
    for item in items:
        if best is None or item < best:
            best = item
    return best


def _json_key(key):
    """Dictionary keys as JSON: a token id, or `[[n-gram ids], label]`."""
    return key if isinstance(key, int) else [list(key[0]), key[1]]


def _from_json_key(value):
    return value if isinstance(value, int) else (tuple(value[0]), int(value[1]))


class _RankEntry(beam.DoFn):
    """`(key, (count, sum))` -> `(rank key, key)`, with the vocabulary loaded once."""

    def __init__(self, stage: str, s: int | None):
        self._stage = stage
        self._s = s

    def setup(self):
        inputs = _load_inputs(self._stage)
        self._vocabulary = inputs["vocabulary"]
        self._variant = inputs["job"]["config"]["variant"]

    def process(self, element):
        key, (count, total) = element
        entry = keywords.make_entry(self._variant, key, count, total, self._vocabulary, self._s)
        yield keywords.rank_key(entry), key


def _flagged(text, best):
    i, _, _, keys = text
    if best is not None and best[1] in keys:
        yield i


def build_pipeline(
    p: beam.Pipeline,
    stage: str,
    chunk_dir: str,
    outputs: str,
    groups: dict,
    s: int | None,
    score_only: bool = False,
) -> None:
    """Adds the scan to pipeline `p` (see the module docstring).

    Args:
      p: The pipeline.
      stage: The staged inputs' folder.
      chunk_dir: Where the checkpoints go.
      outputs: Folder of the text outputs (dictionary, per-text words, keyword, flagged).
      groups: Kind -> number of checkpoint groups.
      s: The refined variant's `s` (None for the paper variant).
      score_only: Only score (the checkpoints): BKI+ decides on the driver.
    """
    scored = []
    for kind, count in groups.items():
        scored.append(
            p
            | f"Groups {kind}" >> beam.Create([(kind, g) for g in range(count)], reshuffle=True)
            | f"Score {kind}" >> beam.ParDo(_ScoreGroups(stage, chunk_dir))
        )
    if score_only:
        return
    if len(scored) == 1:
        per_text = scored[0] | "One kind" >> beam.Map(lambda e: (e[0], [e[1]]))
    else:
        per_text = (
            scored | "Both kinds" >> beam.Flatten() | "Join kinds" >> beam.GroupByKey()
        ) | "As list" >> beam.Map(lambda e: (e[0], list(e[1])))
    texts = per_text | "Candidates" >> beam.ParDo(_Candidates(stage))
    dictionary = (
        texts
        | "Updates" >> beam.FlatMap(lambda t: t[2])
        | "Dictionary" >> beam.CombinePerKey(_ExactSum())
    )
    best = (
        dictionary
        | "Rank" >> beam.ParDo(_RankEntry(stage, s))
        | "Keyword" >> beam.CombineGlobally(_best)
    )
    flagged = texts | "Flag" >> beam.FlatMap(_flagged, beam.pvalue.AsSingleton(best))
    write = beam.io.WriteToText
    (
        dictionary
        | "Dictionary JSON" >> beam.Map(lambda e: json.dumps([_json_key(e[0]), e[1][0], e[1][1]]))
        | "Write dictionary" >> write(_join(outputs, "dictionary"), file_name_suffix=".jsonl")
    )
    (
        texts
        | "Words JSON" >> beam.Map(lambda t: json.dumps([t[0], [list(w) for w in t[1]]]))
        | "Write words" >> write(_join(outputs, "suspicious"), file_name_suffix=".jsonl")
    )
    (
        best
        | "Keyword JSON" >> beam.Map(lambda b: json.dumps(None if b is None else _json_key(b[1])))
        | "Write keyword" >> write(_join(outputs, "keyword"), file_name_suffix=".json")
    )
    (
        flagged
        | "Flagged JSON" >> beam.Map(json.dumps)
        | "Write flagged" >> write(_join(outputs, "flagged"), file_name_suffix=".jsonl")
    )


def _counter(result, name: str) -> int:
    """A Beam counter's committed (else attempted) total; 0 when the runner has none."""
    try:
        query = result.metrics().query(
            beam.metrics.MetricsFilter().with_namespace(_METRICS_NAMESPACE).with_name(name)
        )
    except (AttributeError, NotImplementedError):
        return 0
    total = 0
    for counter in query.get("counters", []):
        value = counter.committed if counter.committed is not None else counter.attempted
        total += int(value or 0)
    return total


def _lines(pattern: str) -> list[str]:
    """The non-empty lines of every file matching `pattern` (any Beam file system)."""
    out = []
    for match in FileSystems.match([pattern]):
        for metadata in sorted(match.metadata_list, key=lambda m: m.path):
            text = _read_bytes(metadata.path).decode("utf-8")
            out.extend(line for line in text.split("\n") if line)
    return out


def _remove(paths: Sequence[str]) -> None:
    existing = [p for p in paths if FileSystems.exists(p)]
    if existing:
        FileSystems.delete(existing)


def run_beam_scan(
    workdir: str,
    config: BKIConfig,
    pipeline_args: Sequence[str] = (),
    output_dir: str | None = None,
    overwrite: bool = False,
    tf_threads: int | None = None,
    tensorboard: bool = False,
    staging_dir: str | None = None,
) -> pipeline.ScanRecord:
    """Scans `workdir`'s training set on Beam; writes the in-process scan's files.

    Args:
      workdir: An attack run or a model scan's import.
      config: The scan's settings (as for `pipeline.run_scan`).
      pipeline_args: Beam pipeline options, e.g. `["--runner=DirectRunner",
        "--direct_num_workers=2", "--direct_running_mode=multi_processing"]`.
      output_dir: Where the scan's files go (a local folder of the driver); default the
        variant's scan folder in `workdir` (then `experiments.purify` and the rest of the
        pipeline read it).
      overwrite: Rescan even when the folder holds a finished scan.
      tf_threads: TensorFlow threads per worker (None: TensorFlow's default).
      tensorboard: Also write the scan's TensorBoard summaries (on the driver).
      staging_dir: Where the workers read the staged inputs and write checkpoints and
        outputs (any Beam file system, e.g. `gs://bucket/scan`; the driver and every
        worker must reach it). Default `output_dir`: its `chunks/` are then the
        in-process scan's, and either engine resumes the other's scan.

    Returns:
      The scan record (`scan.json`), equal to the in-process scan's except timings.
    """
    wd.check_writable(workdir)
    with wd.lock(workdir):
        return _run(
            workdir,
            config,
            list(pipeline_args),
            output_dir,
            overwrite,
            tf_threads,
            tensorboard,
            staging_dir,
        )


def _run(
    workdir, config, pipeline_args, output_dir, overwrite, tf_threads, tensorboard, staging_dir
):
    start = time.time()
    if output_dir is not None:
        output_dir = os.path.abspath(output_dir)
    prepared = pipeline.prepare_scan(workdir, config, overwrite, output_dir)
    if isinstance(prepared, pipeline.ScanRecord):
        return prepared
    run, config, identity, expected, folder = prepared
    ids, lengths = run.encode(run.train.texts)
    lengths = np.asarray(lengths, np.int64)
    labels = np.asarray(run.train.labels, np.int64)
    kinds = ["deletion"] + (["prefix"] if config.variant == "refined" else [])
    plans = {
        kind: chunks.score_plan(
            chunks.make_scorer(run.model, kind, config),
            kind,
            config,
            expected,
            lengths,
            pipeline.CHECKPOINT_TEXTS,
        )
        for kind in kinds
    }
    staging = staging_dir or folder
    stage = _join(staging, INPUTS_DIR)
    outputs = _join(staging, OUTPUTS_DIR)
    chunk_dir = _join(staging, wd.CHUNKS_DIR)
    _remove([stage, outputs])
    for d in (stage, outputs, chunk_dir):
        if not FileSystems.exists(d):
            FileSystems.mkdirs(d)
    with open(os.path.join(workdir, wd.MODEL_FILE), "rb") as f:
        _write_bytes(_join(stage, "model.keras"), f.read())
    buffer = io.BytesIO()
    np.savez(buffer, ids=ids, lengths=lengths, labels=labels)
    _write_bytes(_join(stage, "inputs.npz"), buffer.getvalue())
    _write_bytes(_join(stage, "vocab.txt"), "\n".join(run.vocabulary).encode("utf-8"))
    job = {
        "run_id": uuid.uuid4().hex,
        "config": dataclasses.asdict(config),
        "identity": expected,
        "digests": {kind: plan.digest for kind, plan in plans.items()},
        "checkpoint_texts": pipeline.CHECKPOINT_TEXTS,
        "custom_objects": getattr(run.config, "custom_objects", None),
        "tf_threads": tf_threads,
    }
    _write_bytes(_join(stage, "job.json"), json.dumps(job).encode("utf-8"))
    s = None
    if config.variant == "refined":
        s = round((config.alpha * len(lengths)) ** 2)
        if s < 1:
            raise ValueError(
                f"s = round((alpha * N)^2) = {s} for alpha {config.alpha} and {len(lengths)} "
                "texts; the refined ranking needs s >= 1. Raise --alpha."
            )

    options = PipelineOptions(list(pipeline_args))
    pipeline_start = time.time()
    p = beam.Pipeline(options=options)
    build_pipeline(
        p,
        stage,
        chunk_dir,
        outputs,
        {k: len(v.groups) for k, v in plans.items()},
        s,
        score_only=config.variant == "plus",
    )
    beam_result = p.run()
    beam_result.wait_until_finish()
    pipeline_seconds = time.time() - pipeline_start
    resumed = _counter(beam_result, "units_resumed")

    # Read the outputs back.
    scores = {}
    group_seconds, group_texts = {}, {}
    for kind, plan in plans.items():
        per_text = [np.zeros([int(n)], np.float32) for n in lengths]
        seconds, sizes = [], []
        for g in range(len(plan.groups)):
            path = _join(chunk_dir, plan.chunk_name(g))
            stored = None
            if FileSystems.exists(path):
                stored = chunks.parse_chunk(io.BytesIO(_read_bytes(path)), plan, g)
            if stored is None:
                raise RuntimeError(
                    f"The Beam pipeline finished without checkpoint {path!r}; rerun to resume."
                )
            texts, flat_scores, took = stored
            for i, v in zip(texts, detector.split_flat(flat_scores, lengths[texts])):
                per_text[int(i)] = v
            seconds.append(took)
            sizes.append(len(texts))
        scores[kind] = per_text
        group_seconds[kind], group_texts[kind] = seconds, sizes
    if config.variant == "plus":
        # BKI+'s rounds (decision, removal, rebuilt dictionary) need every text's
        # suspicious words at once: the workers score, the driver decides, exactly as
        # the in-process scan does from the same scores.
        result = detector.select(
            ids,
            lengths,
            scores["deletion"],
            run.vocabulary,
            config,
            labels=labels,
            scan_seconds=time.time() - start,
            model=run.model,
        )
    else:
        stats = {}
        for line in _lines(_join(outputs, "dictionary*.jsonl")):
            key, count, total = json.loads(line)
            stats[_from_json_key(key)] = (int(count), int(total))
        if not stats:
            raise ValueError(
                "No candidate words: every text is empty or holds only padding/OOV tokens."
            )
        suspicious = [()] * len(lengths)
        for line in _lines(_join(outputs, "suspicious*.jsonl")):
            i, words = json.loads(line)
            suspicious[i] = tuple((w, float(v)) for w, v in words)
        flagged = sorted(int(x) for x in _lines(_join(outputs, "flagged*.jsonl")))
        keyword_key = _from_json_key(json.loads(_lines(_join(outputs, "keyword*.json"))[0]))
        ranked = keywords.ranked_entries(stats, config.variant, run.vocabulary, s)
        if ranked[0][1] != keyword_key:
            raise RuntimeError(
                f"The pipeline's keyword key {keyword_key!r} is not the best dictionary entry "
                f"{ranked[0][1]!r}."
            )
        selection = keywords.assemble_result(
            config.variant,
            config.p,
            ranked,
            suspicious,
            flagged,
            labels=labels,
            min_ngram=config.min_ngram,
            max_ngram=config.max_ngram,
            alpha=config.alpha,
            s=s,
        )
        result = detector.BKIResult(
            config=config,
            selection=selection,
            scores=tuple(scores["deletion"]),
            local_scores=None if "prefix" not in scores else tuple(scores["prefix"]),
            detection=detector.as_detection(selection),
            scan_seconds=time.time() - start,
        )
    info = BeamScanInfo(
        runner=str(options.get_all_options().get("runner") or "DirectRunner"),
        pipeline_options={
            k: v for k, v in options.get_all_options(drop_default=True).items() if v is not None
        },
        tf_threads=tf_threads,
        groups={k: len(v.groups) for k, v in plans.items()},
        resumed_units=resumed,
        group_seconds=group_seconds,
        group_texts=group_texts,
        pipeline_seconds=pipeline_seconds,
        wall_seconds=time.time() - start,
    )
    artifacts.write_json(os.path.join(folder, INFO_FILE), info.to_dict())
    record = pipeline.write_scan(
        workdir,
        folder,
        run,
        config,
        expected,
        ids,
        lengths,
        result,
        source=None,
        deletion_seconds=pipeline_seconds,
        resumed=resumed,
        tensorboard=tensorboard,
        start=start,
    )
    _remove([stage, outputs] + ([] if staging == folder else [chunk_dir]))
    return record
