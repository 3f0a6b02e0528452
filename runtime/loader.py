"""Find the team ``orchestrace run TARGET`` names: a built-in, a file or a module.

``TARGET`` is ``team`` / ``spawn`` (the built-in runs), ``path/to/file.py`` or
``package.module``, optionally followed by ``:NAME`` — a :class:`~runtime.teams.Team`, an
:class:`~runtime.teams.Agent`, or a function callable with no arguments that returns either.
Without ``:NAME`` the module must define exactly one team.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from runtime.errors import ConfigurationError
from runtime.teams import Agent, Team


class TargetError(ConfigurationError):
    """The target names no file, module or team (a one-line message, exit status 2)."""


class UserCodeError(Exception):
    """The user's module raised while it was imported or while its factory ran.

    ``traceback_text`` is their traceback, without orchestrace's own frames.
    """

    def __init__(self, target: str, exc: BaseException) -> None:
        super().__init__(f"{target}: {type(exc).__name__}: {exc}")
        frames = traceback.extract_tb(exc.__traceback__)
        here = str(Path(__file__).resolve())
        # importlib.import_module's own frame (importlib/__init__.py) is not theirs either.
        machinery = os.path.dirname(importlib.__file__) + os.sep
        mine = [
            f
            for f in frames
            if f.filename != here and not f.filename.startswith(("<frozen importlib", machinery))
        ]
        text = traceback.format_exception_only(type(exc), exc)
        self.traceback_text = "".join(
            ["Traceback (most recent call last):\n", *traceback.format_list(mine), *text]
        )


def split_target(target: str) -> tuple[str, str | None]:
    """``file.py:name`` → (``file.py``, ``name``); no colon → (target, None)."""
    ref, colon, name = target.rpartition(":")
    if not colon or not ref:
        return target, None
    return ref, name or None


def load_team(target: str) -> Team:
    """The team ``target`` names.

    Raises :class:`TargetError` for a missing file or module, a module with no team (or
    several, and no ``:NAME``), or a name that is not a team; :class:`UserCodeError` when
    the user's code raised; :class:`ConfigurationError` for an invalid team definition.
    """
    from runtime.scenarios import SCENARIOS

    if target in SCENARIOS:
        return SCENARIOS[target]
    ref, name = split_target(target)
    module = _import(ref, target)
    if name is not None:
        if not hasattr(module, name):
            found = _teams_in(module)
            hint = f" (it defines: {', '.join(found)})" if found else ""
            raise TargetError(f"{ref} has no {name!r}{hint}")
        return _as_team(getattr(module, name), f"{ref}:{name}", target)
    teams = _teams_in(module)
    if len(teams) == 1:
        return _as_team(getattr(module, teams[0]), f"{ref}:{teams[0]}", target)
    if not teams:
        agents = _public(module, Agent)
        if agents:
            raise TargetError(
                f"{ref} defines no Team, only agents ({', '.join(agents)}): run one alone "
                f"as {ref}:{agents[0]}, or add `team = Team(...)` at module level"
            )
        raise TargetError(
            f"{ref} defines no Team: add `team = Team(...)` at module level, or name a "
            f"function that returns one as {ref}:NAME"
        )
    raise TargetError(
        f"{ref} defines several teams ({', '.join(teams)}); name one, e.g. {ref}:{teams[0]}"
    )


def _teams_in(module: ModuleType) -> list[str]:
    return _public(module, Team)


def _public(module: ModuleType, kind: type) -> list[str]:
    return [k for k, v in vars(module).items() if isinstance(v, kind) and not k.startswith("_")]


def _required_parameters(func: Callable[..., object]) -> list[str]:
    """The parameters ``func()`` would be missing (none when it cannot be inspected)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _as_team(value: object, where: str, target: str) -> Team:
    if isinstance(value, Team | Agent):
        return Team.of(value)
    if callable(value) and not isinstance(value, type):
        needed = _required_parameters(value)
        if needed:
            raise TargetError(
                f"{where} takes arguments ({', '.join(needed)}); orchestrace run calls it with "
                "none: give them defaults, or name a Team, an Agent or a function of no arguments"
            )
        try:
            made = value()
        except ConfigurationError:
            raise
        except Exception as exc:
            raise UserCodeError(target, exc) from exc
        if isinstance(made, Team | Agent):
            return Team.of(made)
        raise TargetError(f"{where}() returned {type(made).__name__}, not a Team or an Agent")
    raise TargetError(
        f"{where} is {type(value).__name__}, not a Team or an Agent (or a function returning one)"
    )


def _import(ref: str, target: str) -> ModuleType:
    # A leading dot is a path (".", "..", ".hidden.py"): never a module name we can import.
    if ref.endswith(".py") or "/" in ref or "\\" in ref or ref.startswith("."):
        return _import_file(Path(ref), target)
    if Path(ref).is_file():
        return _import_file(Path(ref), target)  # notes.txt: "not a Python file"
    # Like `python -m`: modules of the current folder are importable.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(ref)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (ref == exc.name or ref.startswith(exc.name + ".")):
            raise TargetError(
                f"{ref!r} is neither a built-in run (team, spawn), nor a .py file, nor an "
                f"importable module (no module named {exc.name!r})"
            ) from None
        raise UserCodeError(target, exc) from exc
    except ValueError as exc:  # an empty or relative module name
        raise TargetError(f"{ref!r} is not a module name: {exc}") from None
    except Exception as exc:
        raise UserCodeError(target, exc) from exc


def _import_file(path: Path, target: str) -> ModuleType:
    if not path.exists():
        raise TargetError(f"{path}: no such file")
    if not path.is_file():
        raise TargetError(f"{path}: not a file")
    if path.suffix != ".py":
        raise TargetError(f"{path}: not a Python file (.py)")
    resolved = path.resolve()
    name = f"orchestrace_user_{abs(hash(str(resolved))):x}_{resolved.stem}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise TargetError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    # Like `python file.py`: the file's folder is importable, so it can import its siblings.
    folder = str(resolved.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ConfigurationError:
        raise
    except Exception as exc:
        sys.modules.pop(name, None)
        raise UserCodeError(target, exc) from exc
    return module
