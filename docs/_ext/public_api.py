"""``.. public-api:: MODULE``: the reference page of one public module of gpytorch_vae.

The page shows the module's docstring, a summary table of every public name of the module, then the full
documentation (autodoc) of each name that this page owns. The public names of a module are its ``__all__``; a
module without ``__all__`` exports every name defined at its top level (classes, functions, constants) that does
not start with an underscore.

Every object is documented once, at its *home*: of the modules listed in the configuration value
``public_api_modules`` that export it, the one that defines it (the longest prefix of the object's
``__module__``), else the deepest one. Other modules that re-export it (``gpytorch_vae`` itself,
``gpytorch_vae.training`` for ``atomic_write``) list it in their table with a link to its home. Names whose
docstring starts with "Deprecated" are documented last, under a "Deprecated" heading.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
import sys
import types

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

SIMPLE_VALUES = (str, int, float, bool, type(None))
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(:`*])")  # where a sentence may end
ABBREVIATIONS = ("e.g.", "i.e.", "cf.", "Eq.", "Eqs.", "Sec.", "Fig.", "et al.", "vs.", "resp.")


def public_names(module: types.ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    tree = ast.parse(inspect.getsource(module))
    found = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append(node.name)
        elif isinstance(node, ast.Assign):
            found += [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.append(node.target.id)
    return [name for name in dict.fromkeys(found) if not name.startswith("_")]


def _defining_module(obj) -> str:
    if isinstance(obj, (type, types.FunctionType)) or callable(obj):
        module = getattr(obj, "__module__", None)
        if isinstance(module, str):
            return module
    module = getattr(type(obj), "__module__", "")
    return module if module != "builtins" else ""


@functools.lru_cache(maxsize=None)
def homes(module_names: tuple[str, ...]) -> dict[int, str]:
    """``id(object) -> home module`` for every public object of the documented modules."""
    exporters: dict[int, list[str]] = {}
    defining: dict[int, str] = {}
    for modname in module_names:
        module = importlib.import_module(modname)
        for name in public_names(module):
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType) or isinstance(obj, SIMPLE_VALUES):
                continue  # modules link to their own page; plain constants are documented where they are exported
            exporters.setdefault(id(obj), []).append(modname)
            defining[id(obj)] = _defining_module(obj)

    def rank(key: int, modname: str) -> tuple[int, int]:
        source = defining[key]
        is_prefix = source == modname or source.startswith(modname + ".")
        return (is_prefix, len(modname.split(".")))

    return {key: max(mods, key=lambda m: rank(key, m)) for key, mods in exporters.items()}


def _is_deprecated(obj) -> bool:
    return _own_doc(obj).lower().startswith("deprecated")


def _own_doc(obj) -> str:
    """The object's own docstring: none inherited from a base class or, for a constant, from its type."""
    if isinstance(obj, type):
        doc = obj.__dict__.get("__doc__")
    elif callable(obj) and not isinstance(obj, SIMPLE_VALUES):
        doc = getattr(obj, "__doc__", None)
    else:
        doc = None
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def _doc_comment(modname: str, name: str, obj) -> str:
    """The ``#:`` comment of a constant, in the module that exports it or in the one of its package that assigns it."""
    candidates = [modname] + sorted(m for m in sys.modules if m.startswith(modname + "."))
    for candidate in candidates:
        module = sys.modules.get(candidate)
        if module is None or getattr(module, name, None) is not obj:
            continue
        try:
            comment = ModuleAnalyzer.for_module(candidate).find_attr_docs().get(("", name))
        except PycodeError:
            continue
        if comment:
            return "\n".join(comment).strip()
    return ""


def _type_name(obj) -> str:
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _indent(text: str) -> list[str]:
    return ["   " + line if line else "" for line in text.splitlines()]


def _directive(modname: str, name: str, obj) -> list[str]:
    target = f"{modname}.{name}"
    if isinstance(obj, type):
        kind = "autoexception" if issubclass(obj, BaseException) else "autoclass"
        return [f".. {kind}:: {target}", "   :members:", "   :undoc-members:", "   :show-inheritance:", ""]
    if callable(obj):
        return [f".. autofunction:: {target}", ""]
    # a constant: documented by its ``#:`` comment (autodoc would show the docstring of its type)
    lines = [f".. py:data:: {name}", f"   :module: {modname}", f"   :type: {_type_name(obj)}"]
    if isinstance(obj, SIMPLE_VALUES):
        lines.append(f"   :value: {obj!r}")
    return [*lines, "", *_indent(_doc_comment(modname, name, obj)), ""]


def _balanced(text: str) -> bool:
    """No inline literal, role or emphasis cut open (a period inside ``...`` ends no sentence)."""
    single = text.replace("``", "")
    return text.count("``") % 2 == 0 and single.count("`") % 2 == 0 and single.count("**") % 2 == 0


def first_sentence(doc: str) -> str:
    """The first sentence of the first paragraph of ``doc`` (reST), never cutting inline markup open."""
    paragraph = " ".join(line.strip() for line in doc.strip().split("\n\n")[0].splitlines())
    sentences = SENTENCE_END.split(paragraph)
    for i in range(1, len(sentences) + 1):
        summary = " ".join(sentences[:i])
        if _balanced(summary) and not summary.endswith(ABBREVIATIONS):
            break
    else:
        summary = paragraph
    return summary[:-1] + "." if summary.endswith(":") and not summary.endswith("::") else summary


def _summary(modname: str, name: str, obj) -> str:
    if isinstance(obj, types.ModuleType):
        return first_sentence(inspect.cleandoc(obj.__doc__ or ""))
    if callable(obj) and not isinstance(obj, SIMPLE_VALUES):
        return first_sentence(_own_doc(obj))
    return first_sentence(_doc_comment(modname, name, obj))


class PublicAPI(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        modname = self.arguments[0]
        documented = self.config.public_api_modules
        if modname not in documented:
            raise self.error(f"{modname} is not in public_api_modules (docs/conf.py)")
        home_of = homes(tuple(documented))
        module = importlib.import_module(modname)
        names = public_names(module)

        lines = [f".. automodule:: {modname}", ""]
        if names:
            lines += [".. rubric:: Public names", "", ".. list-table::", "   :class: autosummary longtable",
                      "   :widths: 35 65", ""]  # fmt: skip
            for name in names:
                obj = getattr(module, name)
                if isinstance(obj, types.ModuleType):
                    target = obj.__name__
                else:
                    target = f"{home_of.get(id(obj), modname)}.{name}"
                summary = _summary(modname, name, obj)
                lines += [f"   * - :py:obj:`~{target}`", f"     - {summary}" if summary else "     -"]
            lines.append("")
        owned = [
            (name, getattr(module, name))
            for name in names
            if not isinstance(getattr(module, name), types.ModuleType)
            and home_of.get(id(getattr(module, name)), modname) == modname
        ]
        current = [(name, obj) for name, obj in owned if not _is_deprecated(obj)]
        deprecated = [(name, obj) for name, obj in owned if _is_deprecated(obj)]
        if current:
            lines += [".. rubric:: Reference", ""]
            for name, obj in current:
                lines += _directive(modname, name, obj)
        if deprecated:
            note = "Kept for backward compatibility; each entry names its replacement."
            lines += [".. rubric:: Deprecated", "", note, ""]
            for name, obj in deprecated:
                lines += _directive(modname, name, obj)

        container = nodes.Element()
        source = f"<public-api {modname}>"
        nested_parse_with_titles(self.state, StringList(lines, source=source), container)
        return container.children


def setup(app):
    app.add_config_value("public_api_modules", [], "env")
    app.add_directive("public-api", PublicAPI)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
