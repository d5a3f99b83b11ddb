"""Everything that reads or writes a run folder.

`workdir` owns every file and folder name, the lock and the clearing of derived
outputs; `attack` is the attack run; `pipeline` is "load, `bki.detect`, write" for the
scan and chains the steps; `sanitize` removes flagged texts and retrains;
`comparison`, `reproduction` and `benchmarking` build on them, each with its plots.
"""
