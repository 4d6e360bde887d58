"""Numbered tables from notebook outputs: a chapter's table cell (a pandas DataFrame shown as HTML) with myst-nb's
cell metadata ``mystnb.figure.caption`` and ``mystnb.figure.classes: sbir-table`` is wrapped by myst-nb in a
figure; this extension makes that figure a table for Sphinx's numbering, so its caption reads "Table N" in the
table sequence, not "Fig. N" in the figures', and puts the caption above the table. A cell's outputs that are
not tables (a note where a dataset is absent) are not numbered; a cell's several tables share one number and
caption (write the caption for all of them).

(Sphinx numbers ``nodes.table``, which a raw HTML table is not; ``add_enumerable_node`` gives a figure
subclass the "table" number type, and the transform swaps the node before Sphinx gives unnamed enumerable
nodes their ids, at priority 210.)
"""

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


class TableFigures(SphinxTransform):
    default_priority = 205  # before sphinx.transforms.AutoNumbering (210)

    def apply(self, **kwargs) -> None:
        first: dict = {}  # a cell's outputs container -> its first table figure
        for fig in list(self.document.findall(nodes.figure)):
            if CLASS not in fig["classes"] or type(fig) is not nodes.figure:
                continue
            captions = [c for c in fig.children if isinstance(c, nodes.caption)]
            rest = [c for c in fig.children if not isinstance(c, nodes.caption)]
            if not any("<table" in n.astext() for n in fig.findall(nodes.raw)):
                fig.replace_self(rest)  # an output of the cell that is not a table (a note where data is absent)
            elif id(fig.parent) in first:  # a cell's second table: one number and caption for the cell's tables
                first[id(fig.parent)].extend(rest)
                fig.parent.remove(fig)
            else:
                new = table_figure(fig.rawsource, *captions, *rest, **fig.attributes)  # a table's caption heads it
                fig.replace_self(new)
                first[id(new.parent)] = new


def _visit(self, node):
    self.visit_figure(node)


def _depart(self, node):
    self.depart_figure(node)


def setup(app):
    app.add_enumerable_node(table_figure, "table", _caption, html=(_visit, _depart))
    app.add_transform(TableFigures)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
