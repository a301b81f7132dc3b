"""Steering programs in files: what ``ppl run PROGRAM`` (and anything else
that takes a program by path) accepts.

- ``file.steer``: a ``.steer`` program, checked and compiled;
- ``file.py``: the one ``@ppl.program`` function or ``ppl.Model`` subclass it
  defines; ``file.py:name`` picks one when there are several.

:func:`build_arguments` turns ``NAME=VALUE`` strings into the program's
arguments, converted by their annotation or default (``.steer`` programs by
their declared types). ``--import`` modules register ``@ppl.builtin``
functions (:func:`import_extensions`). Failures raise
:class:`~ppl.errors.UsageError` (bad input: exit status 2) or
:class:`ProgramFailed` (the program itself failed: exit status 1).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

from .errors import ArgumentError, PPLError, UsageError
from .model import Model
from .program import ProgramModel

__all__ = ["ProgramFailed", "build_arguments", "build_lm", "convert_arguments", "find_program",
           "import_extensions", "lm_factory", "lm_from_file", "load_module", "program_parameters"]


#: the prefix of the module names user files are imported under (such modules
#: cannot be imported by name elsewhere: a Ray worker gets them by value)
USER_MODULE_PREFIX = "ppl_user_"


class ProgramFailed(PPLError):
    """The program or the run failed (exit status 1)."""


def load_module(path: Path):
    """Import a Python file once per process (a second ``--import`` of the
    same file must not register its builtins twice)."""
    resolved = path.resolve()
    name = f"{USER_MODULE_PREFIX}{path.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


def lm_from_file(path: str):
    """The language model ``make_lm()`` of the Python file ``path`` builds.
    ``functools.partial(lm_from_file, path)`` is a picklable model factory:
    a worker process imports the file itself and builds its own model."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{file}: no such file (looking for make_lm())")
    make = getattr(load_module(file), "make_lm", None)
    if not callable(make):
        raise UsageError(f"{file}: the file defines no make_lm() function")
    return make()


def lm_factory(model: str | None, module=None, *, backend: str = "hf", **options) -> Callable[[], Any]:
    """A zero-argument callable that builds the program's language model,
    picklable so that a worker process can build its own: ``make_lm()`` of
    the program's file (``module``) when ``model`` is None and the file
    defines one; ``make_lm()`` of the Python file ``model``; else
    ``load_lm(model, backend=backend, **options)`` (the default model when
    ``model`` is None). Files are named by absolute path."""
    if model is None and module is not None and callable(getattr(module, "make_lm", None)):
        return partial(lm_from_file, str(Path(module.__file__).resolve()))
    if model is not None and model.endswith(".py"):
        path = Path(model)
        if not path.is_file():
            raise UsageError(f"--model {path}: no such file")
        if not callable(getattr(load_module(path), "make_lm", None)):
            raise UsageError(f"--model {path}: the file defines no make_lm() function")
        return partial(lm_from_file, str(path.resolve()))
    from .runtime.backends.registry import load_lm

    return partial(load_lm, model, backend=backend, **options)


def build_lm(factory: Callable[[], Any], model: str | None = None):
    """``factory()`` (from :func:`lm_factory`), its failures as ``UsageError``
    (a bad setting for ``load_lm``) or :class:`ProgramFailed` (the model
    could not be built)."""
    from_file = isinstance(factory, partial) and factory.func is lm_from_file
    try:
        return factory()
    except UsageError:
        raise
    except Exception as exc:
        if from_file:
            raise ProgramFailed(f"make_lm() of {factory.args[0]} raised {type(exc).__name__}: {exc}") from exc
        if isinstance(exc, ValueError):
            raise UsageError(str(exc)) from exc
        raise ProgramFailed(f"could not load the model {model or '(default)'}: {exc}") from exc


def _programs_in(module) -> dict[str, Any]:
    found = {}
    for name, obj in vars(module).items():
        if getattr(obj, "__ppl_program__", False):
            found[name] = obj
        elif (
            inspect.isclass(obj)
            and issubclass(obj, Model)
            and obj not in (Model, ProgramModel)
            and obj.__module__ == module.__name__
        ):
            found[name] = obj
    return found


def _load_steer(path: Path, max_steps: int | None, time_limit: float | None = None, program: str | None = None):
    from .dsl import DEFAULT_MAX_STEPS, DSLError, load

    try:
        return load(path, max_steps=max_steps or DEFAULT_MAX_STEPS, time_limit=time_limit, program=program)
    except DSLError as exc:
        raise ProgramFailed(str(exc)) from None
    except ArgumentError as exc:  # a bad limit
        raise UsageError(str(exc)) from None


def import_extensions(names: list[str]) -> None:
    """``--import``: modules by name, or ``.py`` files by path (for ``@ppl.builtin``)."""
    for name in names:
        try:
            if name.endswith(".py"):
                path = Path(name)
                if not path.is_file():
                    raise UsageError(f"--import {name}: no such file")
                load_module(path)
            else:
                importlib.import_module(name)
        except PPLError:
            raise
        except ModuleNotFoundError as exc:
            raise UsageError(f"--import {name}: {exc}") from None
        except Exception as exc:
            raise ProgramFailed(f"--import {name}: importing it raised {type(exc).__name__}: {exc}") from exc


def find_program(spec: str, max_steps: int | None = None,
                 time_limit: float | None = None) -> tuple[Path, str, Any, Any]:
    """``file.steer``, ``file.py`` or ``file.py:name`` -> (path, name, program, module).
    ``max_steps`` and ``time_limit`` are the budgets of a ``.steer`` program
    (``time_limit`` is refused for Python programs, which have no such clock)."""
    path_text, _, name = spec.partition(":") if ":" in Path(spec).name else (spec, "", "")
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if path.suffix == ".steer":
        program = _load_steer(path, max_steps, time_limit, program=name or None)
        return path, program.name, program, None
    if time_limit is not None:
        raise UsageError(f"{path}: --time-limit applies to .steer programs only")
    if path.suffix != ".py":
        raise UsageError(f"{path}: expected a .steer program or a Python file (.py) holding one")
    try:
        module = load_module(path)
    except PPLError:
        raise
    except Exception as exc:
        raise ProgramFailed(f"{path}: importing the file raised {type(exc).__name__}: {exc}") from exc
    programs = _programs_in(module)
    if not programs:
        raise UsageError(
            f"{path}: no steering program found (expected a @ppl.program function "
            "or a ppl.Model subclass)"
        )
    if name:
        if name not in programs:
            raise UsageError(
                f"{path}: no program named {name!r}; programs in the file: {', '.join(sorted(programs))}"
            )
        return path, name, programs[name], module
    if len(programs) > 1:
        raise UsageError(
            f"{path}: several programs ({', '.join(sorted(programs))}); pick one with {path}:NAME"
        )
    ((name, program),) = programs.items()
    return path, name, program, module


def program_parameters(program) -> tuple[bool, dict[str, inspect.Parameter]]:
    """``(wants_lm, parameters)`` of a program: whether its first parameter
    is ``lm`` (it then receives the language model), and the others by name."""
    if inspect.isclass(program):
        sig = inspect.signature(program.__init__)
    else:
        sig = inspect.signature(getattr(program, "__wrapped__", program))
    params = [p for p in sig.parameters.values() if p.name != "self"]
    wants_lm = bool(params) and params[0].name == "lm"
    return wants_lm, {p.name: p for p in (params[1:] if wants_lm else params)}


def _convert(name: str, text: str, param: inspect.Parameter, program=None) -> Any:
    convert = getattr(program, "convert_arg", None)
    if convert is not None:  # .steer programs convert by their declared types
        from .dsl import DSLError

        try:
            return convert(name, text)
        except DSLError as exc:
            raise UsageError(f"--arg {name}={text}: {exc}") from None
    kind = param.annotation if param.annotation is not inspect.Parameter.empty else None
    if isinstance(kind, str):  # postponed annotations
        kind = {"int": int, "float": float, "bool": bool, "str": str}.get(kind)
    if kind is None and param.default is not inspect.Parameter.empty and param.default is not None:
        kind = type(param.default)
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ArgumentError("expected true/false")
        if kind in (int, float):
            return kind(text)
    except ValueError as exc:
        raise UsageError(f"--arg {name}={text}: not a valid {kind.__name__} ({exc})") from None
    return text


def convert_arguments(program, name: str, raw_args: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings as keyword arguments of ``program``, each
    converted by its parameter (missing parameters are not checked)."""
    _, by_name = program_parameters(program)
    kwargs: dict[str, Any] = {}
    for item in raw_args:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--arg {item!r}: expected NAME=VALUE")
        if key not in by_name:
            raise UsageError(
                f"--arg {key}: {name} has no parameter {key!r}; its parameters are: "
                + (", ".join(by_name) or "(none)")
            )
        kwargs[key] = _convert(key, text, by_name[key], program)
    return kwargs


def build_arguments(program, name: str, raw_args: list[str]) -> tuple[list, dict, bool]:
    """Parse ``NAME=VALUE`` strings against the program's parameters.
    Returns (positional, keyword, wants_lm)."""
    wants_lm, by_name = program_parameters(program)
    kwargs = convert_arguments(program, name, raw_args)
    missing = [
        p.name for p in by_name.values()
        if p.default is inspect.Parameter.empty and p.name not in kwargs
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if missing:
        raise UsageError(f"{name} needs --arg for: {', '.join(missing)}")
    return [], kwargs, wants_lm
