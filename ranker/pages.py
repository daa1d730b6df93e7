"""HTML pages from the Jinja2 templates in ``ranker/templates/`` (the report and monitor pages).

Every page extends ``report/_layout.html.j2`` (inline CSS, no script, no network); values are
escaped by the template engine, so a canvas or column name cannot inject markup.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"


@functools.cache
def environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> str:
    """``template`` (a path under ranker/templates/) rendered with ``context``."""
    return str(environment().get_template(template).render(**context))
