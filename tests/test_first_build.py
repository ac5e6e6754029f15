"""What a first build does per instance, seen from outside: python stages share a few worker
threads, only a function that takes ``outdir`` gets a work folder, and planning pauses the
garbage collector without leaving it off. Nothing here times anything (benchmarks/scale.py
does)."""

from __future__ import annotations

import gc
import os

from conftest import Project

from motionflow.cli.options import planning_gc

STEPS = """\
import threading
from pathlib import Path


def who(n):
    return threading.current_thread().name


def into(word, outdir):
    listing = sorted(p.name for p in Path(outdir).iterdir())
    out = Path(outdir) / "word.txt"
    out.write_text(f"{word} {Path(outdir).is_dir()} {listing}")
    return out


def elsewhere(word):
    out = Path("made-elsewhere") / f"{word}.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(word.upper())
    return out.resolve()
"""

THREADS = """\
version: 1
name: threads
matrix:
  n: [{values}]
stages:
  who:
    uses: python
    with: {{call: "steps:who", n: "{{{{ n }}}}"}}
outputs: [who]
"""

FILES = """\
version: 1
name: files
matrix:
  word: [alpha, beta]
stages:
  into:
    uses: python
    with: {call: "steps:into", word: "{{ word }}"}
  elsewhere:
    uses: python
    with: {call: "steps:elsewhere", word: "{{ word }}"}
outputs: [into, elsewhere]
"""


def test_python_stages_share_a_few_worker_threads(project: Project) -> None:
    project.write("steps.py", STEPS)
    project.write("threads.yaml", THREADS.format(values=", ".join(str(i) for i in range(40))))
    result = project.run_json("threads.yaml")
    assert result["_exit"] == 0, result["_stderr"]
    assert result["executed"] == 40
    names = {
        path.read_text(encoding="utf-8").strip()
        for path in project.out("threads").glob("*/who.txt")
    }
    assert len(list(project.out("threads").glob("*/who.txt"))) == 40
    # one thread per instance running at once (the run's concurrency), not one per instance
    assert 1 <= len(names) <= (os.cpu_count() or 1), names
    assert all(name.startswith("python-stage-") for name in names), names


def test_only_a_function_taking_outdir_gets_a_work_folder(project: Project) -> None:
    project.write("steps.py", STEPS)
    project.write("files.yaml", FILES)
    result = project.run_json("files.yaml")
    assert result["_exit"] == 0, result["_stderr"]
    out = project.out("files")
    # the folder existed, empty, when the function ran; its file was stored and written out
    assert (out / "alpha" / "into.txt").read_text(encoding="utf-8") == "alpha True []"
    # a file returned from elsewhere is copied into the cache, as before
    assert (out / "beta" / "elsewhere.txt").read_text(encoding="utf-8") == "BETA"
    # and no work folder is left behind in the cache
    assert not list((project.cache / "tmp").glob("work-*"))


def test_planning_pauses_the_collector_and_turns_it_back_on() -> None:
    assert gc.isenabled()
    try:
        with planning_gc():
            assert not gc.isenabled()
            kept = [object() for _ in range(10)]
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()
