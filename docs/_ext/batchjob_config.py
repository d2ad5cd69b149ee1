"""``.. batchjob-config::``: the ``[batchjob]`` settings table, generated from ``config.OPTIONS``.

The table is built when the docs are built, from the same dictionary that provider info
publishes and the readers fall back to, so the documented defaults cannot drift from the code.
"""

from __future__ import annotations

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx


class BatchjobConfig(Directive):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from airflow_batchjob import config

        table = nodes.table(classes=["batchjob-config"])
        group = nodes.tgroup(cols=4)
        table += group
        for width in (22, 10, 10, 58):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        head += _row(["Option", "Type", "Default", "What it does"])
        body = nodes.tbody()
        group += body
        for name, option in config.OPTIONS.items():
            body += _row(
                [
                    nodes.literal(text=name),
                    option.type,
                    nodes.literal(text=option.default),
                    option.description,
                ],
                ids=[f"option-{name.replace('_', '-')}"],
            )
        intro = nodes.paragraph(
            text=f"Section [{config.SECTION}], options added in {config.VERSION_ADDED} "
            f"({len(config.OPTIONS)} options):"
        )
        return [intro, table]


def _row(cells: list[object], ids: list[str] | None = None) -> nodes.row:
    row = nodes.row(ids=ids or [])
    for cell in cells:
        entry = nodes.entry()
        para = nodes.paragraph()
        para += cell if isinstance(cell, nodes.Node) else nodes.Text(str(cell))
        entry += para
        row += entry
    return row


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("batchjob-config", BatchjobConfig)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
