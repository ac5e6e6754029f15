"""``motionflow why`` reads well on a sweep: one edit is said once, as a word diff."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO, Project

from motionflow.why import Change, Explanation, group_explanations
from motionflow.worddiff import edits, render, word_diff

SWEEP = (REPO / "recipes" / "sweep.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("old", "new", "context", "expected"),
    [
        (
            "A dancer in a red jacket",
            "A dancer in a blue jacket",
            None,
            "A dancer in a [-red-]{+blue+} jacket",
        ),
        ("a red jacket", "a jacket", None, "a [-red-] jacket"),
        ("a jacket", "a red bomber jacket", None, "a {+red bomber+} jacket"),
        ("a  red\njacket", "a red jacket", None, "a red jacket"),  # white space is not a word
        ("", "a jacket", None, "{+a jacket+}"),
        (
            "one two three four five six seven eight nine ten",
            "one two three four FIVE six seven eight nine ten",
            2,
            "… three four [-five-]{+FIVE+} six seven …",
        ),
        ("w1 w2 w3 w4 x", "w1 w2 w3 w4 y", 2, "… w3 w4 [-x-]{+y+}"),  # nothing after it
        ("x w1 w2 w3", "y w1 w2 w3", 1, "[-x-]{+y+} w1 …"),
        ("a b c", "a b c", 1, "a b c"),  # nothing changed: nothing elided
        ("a x b", "a y b", 1, "a [-x-]{+y+} b"),  # a one-word gap is not worth an ellipsis
    ],
)
def test_word_diff(old: str, new: str, context: int | None, expected: str) -> None:
    assert render(word_diff(old, new, context)) == expected


def test_edits_name_the_change_not_the_words_around_it() -> None:
    red = edits("A red jacket dances on a roof.", "A red jacket twirls on a roof.")
    blue = edits("A blue coat dances at a beach.", "A blue coat twirls at a beach.")
    assert red == blue == ((("dances",), ("twirls",)),)
    assert edits("a  b\nc", "a b c") == ()


def _changed(label: str, name: str, old: str, new: str) -> Explanation:
    change = Change("prompt", name, old, new)
    stage = label.split("[", 1)[0]
    components = {"params": {name: new}}
    return Explanation(
        label, stage, [], "run", "rendered prompt changed", "k", "p", components, [change]
    )


def test_one_template_edit_is_one_group_across_stages() -> None:
    items = [
        _changed("prompt[red]", "template", "a red dances", "a red twirls"),
        _changed("take[red]", "prompt", "a red dances", "a red twirls"),
        _changed("take[blue]", "prompt", "a blue dances", "a blue twirls"),
        _changed("take[green]", "prompt", "a green dances", "a green jumps"),
    ]
    first, second = group_explanations(items)
    assert first.instances == ["prompt[red]", "take[red]", "take[blue]"]
    assert first.fields == [["template", "prompt"]]
    assert second.instances == ["take[green]"]
    assert first.to_json()["count"] == 3


@pytest.mark.slow
def test_a_one_word_edit_of_a_sweep_reads_in_a_screenful(project: Project) -> None:
    project.write("sweep.yaml", SWEEP)
    result = project.run_json("sweep.yaml")
    assert (result["_exit"], result["jobs_submitted"]) == (0, 20), result["_stderr"]
    project.write("sweep.yaml", SWEEP.replace("and dances in", "and twirls in"))

    proc = project.cli("why", "sweep.yaml", env={"COLUMNS": "80"})  # piped: no colours
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # One block per reason: the 2 unchanged shared stages, the edit (20 prompts + 20 takes),
    # the 20 posters that wait for the takes, then a summary. A block is a headline, its count
    # and 5 names (labels of up to 47 characters: at most 6 lines at 80 columns) and its change
    # (2 lines of heading, 1-2 of diff): at most ~10 lines, so 3 blocks and a 2-line summary
    # stay under 40, where one paragraph per instance took 382 lines.
    assert len(lines) < 40, proc.stdout
    assert proc.stdout.count("[-dances-]{+twirls+}") == 1  # the change, said once
    assert "40 instances (20 prompt, 20 take):" in proc.stdout
    assert "(and 35 more)" in proc.stdout and "20 instances: poster[" in proc.stdout
    assert "rendered prompt changed (template, prompt)" in proc.stdout

    # nothing is wider than the terminal, so nothing is folded by it, and our own line breaks
    # fall between words: every instance label and every word of the diff comes out whole
    assert all(len(line) <= 80 for line in lines), proc.stdout
    data = json.loads(project.cli("why", "sweep.yaml", "--json").stdout)
    labels = {i["instance"] for i in data["instances"]}
    for token in re.findall(r"\b(?:prompt|take|poster)\[[^\s,:]*", proc.stdout):
        assert token in labels, token
    (diff_line,) = [line for line in lines if "[-dances-]" in line]
    assert (
        diff_line
        == "    … a red bomber jacket and [-dances-]{+twirls+} in a neon rooftop at night."
    )

    # --json stays complete: every instance with its changes, and the groups on top
    assert len(data["instances"]) == 62
    assert sum(g["count"] for g in data["groups"]) == 62
    (edit,) = [g for g in data["groups"] if g["kind"] == "changed"]
    assert edit["count"] == 40 and edit["changes"][0]["fields"] == ["template", "prompt"]
    take = next(i for i in data["instances"] if i["instance"].startswith("take["))
    assert take["changes"][0]["diff"].count("[-dances-]{+twirls+}") == 1
