"""Ordinary Jinja2 templates render as before under the sandbox's limits.

Requirement (issue 10, denial of service): a template cannot make ``validate`` hang or run out
of memory. The hostile templates (huge integers, strings and lists, nested loops, ``lipsum``,
runaway macros, floods of output) are cases of the corpus, ``tests/hostile/corpus.py``,
refused with exit code 2 and a ``file:line:column`` message naming the limit. This file checks
that the limits cost ordinary templates nothing: the same text, hence the same key.
"""

from __future__ import annotations

from conftest import Project
from hostile.corpus import TEMPLATE_RECIPE


def test_ordinary_template_renders_as_before(project: Project) -> None:
    """Loops, filters and small arithmetic give the same text, hence the same key, as before."""
    template = (
        "{% for o in outfits %}{{ loop.index }}. {{ o | title }}{{ ', ' if not loop.last }}"
        "{% endfor %} ({{ outfits | length * 2 }}, {{ 2 ** 10 }}, {{ '%03d' % 7 }}, "
        "{{ '{:>3}'.format(5) }}, {{ 'ab' ~ 'cd' | upper }}, {{ range(3) | join('-') }})"
    )
    rendered = "1. Red Jacket, 2. White Hoodie (4, 1024, 007,   5, abCD, 0-1-2)"
    project.write("templated.yaml", TEMPLATE_RECIPE.format(template=template))
    project.write("literal.yaml", TEMPLATE_RECIPE.format(template=rendered))
    keys = []
    for name in ("templated.yaml", "literal.yaml"):
        plan = project.plan_json(name)
        keys.append(plan["instances"][0]["key"])
    assert keys[0] == keys[1]
