"""Every class of litecluster's exception tree, with every module of the package imported (a
class joins the tree when its module is imported)."""

from __future__ import annotations

import importlib
import pkgutil

import litecluster
from litecluster.errors import LiteclusterError


def package_modules() -> list[str]:
    """The names of every module of the package, each imported."""
    names = [litecluster.__name__]
    for info in pkgutil.walk_packages(litecluster.__path__, litecluster.__name__ + "."):
        if info.name.endswith(".__main__"):
            continue  # runs the CLI when imported
        importlib.import_module(info.name)
        names.append(info.name)
    return names


def error_tree() -> list[type[LiteclusterError]]:
    """``LiteclusterError`` and every class under it, each once."""
    package_modules()
    out: list[type[LiteclusterError]] = []
    todo = [LiteclusterError]
    while todo:
        cls = todo.pop()
        if cls not in out:
            out.append(cls)
            todo.extend(cls.__subclasses__())
    return out
