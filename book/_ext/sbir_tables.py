"""Numbered tables from notebook outputs: a chapter's table cell (a pandas DataFrame shown as HTML) with myst-nb's
cell metadata ``mystnb.figure.caption`` and ``mystnb.figure.classes: sbir-table`` is wrapped by myst-nb in a
figure; this extension makes that figure a table for Sphinx's numbering, so its caption reads "Table N" in the
table sequence, not "Fig. N" in the figures', and puts the caption above the table. In a figure or table cell,
an output that is not its figure or table (a note, a prose paragraph, a note where a dataset is absent) is not
wrapped, captioned and numbered as one (myst-nb wraps every output); a cell's several tables or images share one
number and caption (write the caption for all of them). A chapter's reference to a table or figure its cell shows only where
a dataset is present reads "not shown in this build" where it is absent.

(Sphinx numbers ``nodes.table``, which a raw HTML table is not; ``add_enumerable_node`` gives a figure
subclass the "table" number type, and the transform swaps the node before Sphinx gives unnamed enumerable
nodes their ids, at priority 210.)
"""

import re

from docutils import nodes
from sphinx.transforms import SphinxTransform

CLASS = "sbir-table"


class table_figure(nodes.figure):  # noqa: N801 - docutils node classes are named as their tags
    """A figure holding a table output: numbered as a table."""


def _caption(node) -> str | None:
    for child in node.children:
        if isinstance(child, nodes.caption):
            return child.astext()
    return None


def _cell(node):
    """The code cell's output container a myst-nb figure wrapper sits in (None: a Markdown figure)."""
    while node is not None and node.get("nb_element") != "cell_code_output":
        node = node.parent
    return node


class TableFigures(SphinxTransform):
    """myst-nb wraps *every* rich output of a cell with figure metadata in a figure with the cell's caption: a prose
    note printed beside a plot became a second, empty "Fig. N" with the same caption. Here, per code cell: a
    wrapper around an output that is not what the cell shows (no image in a figure cell, no table in a table
    cell) is removed, keeping the output; a cell's further images or tables join its first figure (one number,
    one caption); and a table cell's figure becomes a ``table_figure``, numbered as a table, caption first."""

    default_priority = 205  # before sphinx.transforms.AutoNumbering (210)

    def _forget(self, fig) -> None:
        """A removed wrapper's label leaves the document: a {numref} to it reads "not shown" (``_not_shown``)."""
        for target in fig["ids"]:
            if self.document.ids.get(target) is fig:
                del self.document.ids[target]
                for name, id_ in list(self.document.nameids.items()):
                    if id_ == target:
                        del self.document.nameids[name]

    def apply(self, **kwargs) -> None:
        first: dict = {}  # (cell, table?) -> its first figure
        for fig in list(self.document.findall(nodes.figure)):
            cell = _cell(fig.parent)
            if type(fig) is not nodes.figure or cell is None:
                continue
            table = CLASS in fig["classes"]
            captions = [c for c in fig.children if isinstance(c, nodes.caption)]
            rest = [c for c in fig.children if not isinstance(c, nodes.caption)]
            if table:
                shows = any("<table" in n.astext() for n in fig.findall(nodes.raw))
            else:
                shows = any(True for _ in fig.findall(nodes.image))
            key = (id(cell), table)
            if not shows:  # an output of the cell that is not its figure or table (a note where data is absent)
                self._forget(fig)
                fig.replace_self(rest)
            elif key in first:  # a cell's second table or image: one number and caption for all of them
                self._forget(fig)
                first[key].extend(rest)
                fig.parent.remove(fig)
            elif table:
                new = table_figure(fig.rawsource, *captions, *rest, **fig.attributes)  # a table's caption heads it
                fig.replace_self(new)
                for target in new["ids"]:  # a name (mystnb figure.name) now labels the table: {numref}: "Table N"
                    self.document.ids[target] = new
                first[key] = new
            else:
                first[key] = fig


NAMED = re.compile(r"^c\d\d-(tbl|fig)-[a-z0-9-]+$")


def _not_shown(app, env, node, contnode):
    """A chapter's {numref} to one of its tables or figures that this build does not hold (its cell shows it only
    where a dataset is present, or at another scale): the reference reads "not shown in this build" instead of a
    broken link, and is no build error."""
    if node.get("reftype") == "numref" and NAMED.match(node.get("reftarget", "")):
        kind = "table" if "-tbl-" in node["reftarget"] else "figure"
        return nodes.emphasis("", f"a {kind} not shown in this build")
    return None


def _visit(self, node):
    self.visit_figure(node)


def _depart(self, node):
    self.depart_figure(node)


def setup(app):
    app.add_enumerable_node(table_figure, "table", _caption, html=(_visit, _depart))
    app.add_transform(TableFigures)
    app.connect("missing-reference", _not_shown)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
