"""Griffe extension for the API reference: Sphinx roles in docstrings become links, and
the ``#:`` comments above module constants become their docstrings.

``:func:`dmft.solve``` (also ``:class:``, ``:meth:``, ``:attr:``, ``:mod:``, ``:data:``,
``:exc:``, ``:obj:``; ``~`` shows the last component) becomes the object's name in code
font, linked to its entry when the reference documents it (an optional cross-reference:
no warning when it does not, e.g. for private helpers). Names are resolved in the scope
of the docstring's object, and the packages' public names (``dmft.solve``, which
``import dmft`` loads from ``dmft.multipass._solve.solve``; ``onepass.data.Binned``, the
module ``onepass.data`` being ``dmft.data``) are mapped to the objects behind them.
"""
from __future__ import annotations

import html
import importlib
import re
import sys
from pathlib import Path

import griffe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the packages documented, not an installed copy

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")


def _public_names() -> dict:
    """``{'dmft.solve': 'dmft.multipass._solve.solve', ...}``: each package's lazily loaded names."""
    names = {}
    for package in ("dmft", "dmft.multipass", "onepass"):
        for name, (module, attribute) in importlib.import_module(package)._PUBLIC.items():
            names[f"{package}.{name}"] = module if attribute is None else f"{module}.{attribute}"
    return names


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring once the packages are loaded."""

    def __init__(self) -> None:
        super().__init__()
        self.public = _public_names()

    def _target(self, obj: griffe.Object, name: str) -> str:
        head, _, rest = name.partition(".")
        try:  # the first component in the docstring's scope: a local name, an import
            head = obj.resolve(head)
        except (griffe.NameResolutionError, ValueError):
            pass
        name = head + ("." + rest if rest else "")
        module, _, attribute = name.rpartition(".")
        if name not in self.public and module in self.public:  # a member of a module known by another name
            return f"{self.public[module]}.{attribute}"
        return self.public.get(name, name)

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.is_attribute and obj.docstring is None:
            _comment_docstring(obj)
        if obj.docstring is None or ":`" not in obj.docstring.value:
            return

        def link(match: re.Match) -> str:
            short, name = match.group(1) == "~", match.group(2).strip()
            text = name.rsplit(".", 1)[-1] if short else name
            target = self._target(obj, name)
            return f'<autoref identifier="{html.escape(target)}" optional><code>{html.escape(text)}</code></autoref>'

        obj.docstring.value = ROLE.sub(link, obj.docstring.value)


def _comment_docstring(obj: griffe.Object) -> None:
    """The ``#:`` comment lines right above an attribute's assignment, as its docstring."""
    if obj.filepath is None or obj.lineno is None or isinstance(obj.filepath, list):
        return
    lines = Path(obj.filepath).read_text().splitlines()
    comment = []
    i = obj.lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        comment.insert(0, lines[i].lstrip()[2:].strip())
        i -= 1
    if comment:
        obj.docstring = griffe.Docstring(" ".join(comment), lineno=i + 2, parent=obj)
