"""Hostile Jinja2 templates end fast with a located error; ordinary ones render as before.

Requirement (issue 10, denial of service): a template cannot make ``validate`` hang or run out
of memory. Huge integers, strings and lists, nested loops, ``lipsum``, runaway macros and
floods of output are refused with exit code 2 and a ``file:line:column`` message naming the
limit, never a traceback. The subprocess timeout is the guard; nothing here is timed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import Project

RECIPE = """\
version: 1
name: hostile
provider: simulate
vars:
  outfits: [red jacket, white hoodie]
stages:
  prompt:
    uses: prompt
    with:
      template: "{template}"
outputs: [prompt]
"""

HOSTILE = {
    "nested_ranges": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "range() of more than 10,000",
    ),
    "nested_loops": (
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        "loops ran more than",
    ),
    "lipsum": ("{{ lipsum(n=10**8) }}", "lipsum"),
    "power": ("{{ 9**(9**9) }}", "bits"),
    "repeat": ("{{ 'a' * 10**10 }}", "10,000,000,000"),
    "doubling": ("{% set s = 'a' * 1000000 %}{{ s ~ s }}", "limit: 1,000,000"),
    "padding": ("{{ 'a'.ljust(10**9) }}", "str.ljust"),
    "center_filter": ("{{ 'a' | center(10000000000) }}", "width"),
    "format_width": ("{{ '%0999999999d' % 1 }}", "format width"),
    "replace": ("{{ ('a' * 100000).replace('', 'bbbbbbbbbbbbbbbbbbbb') }}", "replaced text"),
    "shared_lists": (
        "{% set l = range(1000) | list %}{% set m = [l] * 1000 %}{{ [m] * 1000 }}",
        "limit: 1,000,000",
    ),
    "output_flood": (
        "{% for i in range(10000) %}{{ 'a' * 1000 }}{% endfor %}",
        "writes more than",
    ),
    "set_block_flood": (
        "{% set x %}{% for i in range(10000) %}{{ 'a' * 200 }}{% endfor %}{% endset %}ok",
        "writes more than",
    ),
    "recursive_macro": (
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "recursion too deep",
    ),
    "recursive_loop": (
        "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
        "recursion too deep",
    ),
    "exponential_macro": (
        "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
        "longer than",
    ),
}


def _validate(project: Project, template: str) -> subprocess.CompletedProcess[str]:
    project.write("hostile.yaml", RECIPE.format(template=template))
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from motionflow.cli import main; main()",
            "validate",
            "hostile.yaml",
        ],
        cwd=project.root,
        env={**os.environ, "MOTIONFLOW_CACHE": str(project.cache)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_template_is_refused_with_a_located_message(project: Project, case: str) -> None:
    template, expected = HOSTILE[case]
    proc = _validate(project, template)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "hostile.yaml:10:" in proc.stderr, proc.stderr  # file:line:column of the template
    assert expected in proc.stderr, proc.stderr
    assert "nothing was run or spent" in proc.stderr


def test_ordinary_template_renders_as_before(project: Project) -> None:
    """Loops, filters and small arithmetic give the same text, hence the same key, as before."""
    template = (
        "{% for o in outfits %}{{ loop.index }}. {{ o | title }}{{ ', ' if not loop.last }}"
        "{% endfor %} ({{ outfits | length * 2 }}, {{ 2 ** 10 }}, {{ '%03d' % 7 }}, "
        "{{ '{:>3}'.format(5) }}, {{ 'ab' ~ 'cd' | upper }}, {{ range(3) | join('-') }})"
    )
    rendered = "1. Red Jacket, 2. White Hoodie (4, 1024, 007,   5, abCD, 0-1-2)"
    project.write("templated.yaml", RECIPE.format(template=template))
    project.write("literal.yaml", RECIPE.format(template=rendered))
    keys = []
    for name in ("templated.yaml", "literal.yaml"):
        plan = project.plan_json(name)
        keys.append(plan["instances"][0]["key"])
    assert keys[0] == keys[1]
