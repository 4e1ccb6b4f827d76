"""Keyword checking for classes whose framework base swallows unknown keywords.

Framework base classes often end in ``**kwargs`` that nothing reads, so a
misspelt keyword (``speach_rate=1.5``) would vanish without a word. Adapters
check what they pass on against what the base classes accept.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Collection, Iterable, Mapping

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def accepted_keywords(*classes: type) -> set[str]:
    """Every parameter name the classes' constructors (and their bases') take by keyword."""
    return {
        name
        for cls in classes
        for base in cls.__mro__
        if "__init__" in vars(base) and base is not object
        for name, parameter in inspect.signature(vars(base)["__init__"]).parameters.items()
        if parameter.kind in _NAMED and name != "self"
    }


def check_keywords(
    owner: str, given: Iterable[str], accepted: Collection[str], moved: Mapping[str, str] | None = None
) -> None:
    """A ``TypeError`` naming the first keyword of ``given`` not in ``accepted``.

    ``moved`` maps names that are accepted elsewhere to where they go (for
    example a settings object); the error then says so. Otherwise the closest
    accepted or moved name is suggested.
    """
    moved = moved or {}
    for name in given:
        if name in accepted:
            continue
        candidates = sorted(set(accepted) | set(moved))
        close = (moved.get(name) and [name]) or difflib.get_close_matches(name, candidates, n=1)
        hint = ""
        if close:
            target = close[0]
            hint = f"; did you mean {moved.get(target) or repr(target)}?"
        raise TypeError(f"{owner}() got an unexpected keyword argument {name!r}{hint}")
