"""The ``ppl`` command line.

::

    ppl run PROGRAM [--arg NAME=VALUE ...] [--import MODULE ...] [--max-steps N]
            [--method steer|smc|is] [--particles N]
            [--expand K] [--ess-threshold X] [--resampling NAME] [--seed S]
            [--model NAME_OR_PATH] [--device D] [--dtype T] [--json OUT.json]
            [--html OUT.html] [--quiet] [--debug]
    ppl run PROGRAM --inputs FILE.jsonl [--output OUT.jsonl] [--max-concurrent M]
            [--top K] [--workers W | --ray-address ADDR] [--threads-per-worker T] ...
    ppl check FILE.steer ...
    ppl models
    ppl bench [ARGS ...]

``PROGRAM`` is a ``.steer`` file, or a Python file holding a ``@ppl.program``
function or a ``ppl.Model`` subclass (``file.py:name`` picks one when there
are several). ``.steer`` programs are checked before they run; ``--import``
loads Python modules (or ``.py`` files) that register ``@ppl.builtin``
functions for them.
A first parameter named ``lm`` receives the language model: the file's own
``make_lm()`` if it defines one and ``--model`` is not given, ``make_lm()``
of the Python file ``--model FILE.py``, else ``ppl.load_lm(--model)`` (the
default model when omitted). Other parameters
come from ``--arg NAME=VALUE``, converted by their annotation or default.
With ``--inputs`` the program runs once per line of a JSONL file (see
:mod:`ppl.cli_map`); ``--arg`` values then fill in what a line leaves out.

Exit status: 0 success, 1 the program or the run failed (with ``--inputs``:
any input's run raised or had every particle die), 2 bad usage (a missing
file, an unknown program name, a bad ``--arg``, a bad input line).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import math
import sys
import traceback
from pathlib import Path
from typing import Any

from .cli_map import DEFAULT_MAX_CONCURRENT, DEFAULT_TOP, check_flags, run_inputs
from .errors import ArgumentError, ModelLoadError, PPLError, UsageError
from .program_files import (
    ProgramFailed,
    build_arguments,
    build_lm,
    find_program,
    import_extensions,
    lm_factory,
    program_parameters,
)
from .runtime.backends.registry import available_backends, backend_summary
from .runtime.inference import get_method, methods
from .runtime.observers import Progress
from .runtime.resampling import RESAMPLERS

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _shorten(text: str, width: int = 70) -> str:
    text = repr(text) if isinstance(text, str) else repr(text)
    return text if len(text) <= width else text[: width - 3] + "..."


def format_result(result, title: str) -> str:
    lines = [title, ""]
    post = result.posterior()
    if post:
        lines.append(f"{'P':>7}  result")
        for key, p in list(post.items())[:20]:
            lines.append(f"{p:7.4f}  {_shorten(key)}")
        if len(post) > 20:
            lines.append(f"         ... and {len(post) - 20} more distinct results")
    else:
        lines.append("no result: every particle died")
    lines.append("")
    log_z = "-inf" if result.log_Z == -math.inf else f"{result.log_Z:.4f}"
    lines.append(f"log Z = {log_z}   status: {result.status}   steps: {result.n_steps}   "
                 f"wall time: {result.wall_time:.2f} s")
    ess = " ".join(f"{e:.1f}" for e in result.ess[:40])
    lines.append(f"ESS per step: {ess}{' ...' if len(result.ess) > 40 else ''}")
    if result.resampled_at:
        lines.append(f"resampled after {len(result.resampled_at)} of {result.n_steps} steps")
    for source, counters in result.stats.items():
        shown = {k: v for k, v in counters.items() if not isinstance(v, (list, dict))}
        text = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
        lines.append(f"{source}: {text}")
    return "\n".join(lines)


# -- commands ----------------------------------------------------------------------


def _lm_factory(args, module):
    """The model factory of ``--model``/``--backend``/``--device``/``--dtype``
    (see :func:`~ppl.program_files.lm_factory`)."""
    given = (("device", args.device), ("dtype", args.dtype))
    if args.backend == "hf":  # the hf loader sets the threads (its default rule when None)
        given += (("threads", args.threads),)
    options = {k: v for k, v in given if v is not None}
    return lm_factory(args.model, module, backend=args.backend, **options)


def _threads() -> int | None:
    """torch's CPU threads in this process, if torch is loaded (for the header)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _make_lm(args, module):
    return build_lm(_lm_factory(args, module), args.model)


def _method_options(args) -> dict[str, Any]:
    """The options of ``--method`` that the command line sets: every option
    the method declares that has a command-line flag of the same name."""
    method = get_method(args.method)
    return {name: getattr(args, name) for name in method.options if hasattr(args, name)}


def cmd_run(args) -> int:
    check_flags(args)
    import_extensions(args.imports)
    path, name, program, module = find_program(args.program, args.max_steps)
    if args.inputs:
        factory = _lm_factory(args, module) if program_parameters(program)[0] else None
        return run_inputs(args, name, program, _method_options(args), factory)
    _, kwargs, wants_lm = build_arguments(program, name, args.arg)
    if args.threads is not None:  # also for a make_lm() model; the hf loader sets it again
        from .runtime.backends.hf.devices import set_threads

        set_threads(args.threads)
    lm = _make_lm(args, module) if wants_lm else None
    try:
        model = program(lm, **kwargs) if wants_lm else program(**kwargs)
    except PPLError as exc:
        raise UsageError(f"{path}: {exc}") from None
    except Exception as exc:
        raise ProgramFailed(f"{path}: building {name} raised {type(exc).__name__}: {exc}") from exc
    options: dict[str, Any] = {"n_particles": args.particles, "seed": args.seed, **_method_options(args)}
    extra: dict[str, Any] = {"history": bool(args.html)}
    show_progress = not args.quiet and sys.stderr.isatty()
    progress = Progress() if show_progress else None
    try:
        result = asyncio.run(get_method(args.method).run(model, **options, **extra, observer=progress))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    except PPLError as exc:
        raise ProgramFailed(f"{path}: {exc}") from exc
    finally:
        if progress:
            progress.close()
    settings = ", ".join(f"{k}={v}" for k, v in {**options, "threads": _threads()}.items() if v is not None)
    lm_name = lm.name if lm is not None else "no model"
    print(format_result(result, f"{name} on {lm_name}: {result.method} ({settings})"))
    for target, write in ((args.json, result.to_json), (args.html, result.to_html)):
        if target:
            try:
                Path(target).write_text(write(), encoding="utf-8")
            except OSError as exc:
                raise ProgramFailed(f"could not write {target}: {exc}") from exc
            print(f"wrote {target}")
    return EXIT_OK if result.status == "ok" else EXIT_FAILURE


def cmd_check(args) -> int:
    """Check ``.steer`` files; print every diagnostic; exit 1 if any."""
    from .dsl import check_file

    import_extensions(args.imports)
    failed = False
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        if path.suffix != ".steer":
            raise UsageError(f"{path}: ppl check reads .steer programs")
        diagnostics = check_file(path)
        for d in diagnostics:
            print(d.format())
        if diagnostics:
            failed = True
            n = len(diagnostics)
            print(f"{n} error{'s' if n != 1 else ''} in {path}")
        else:
            print(f"{path}: ok")
    return EXIT_FAILURE if failed else EXIT_OK


def cmd_models(args) -> int:
    from .runtime.backends import hf

    print(f"default model: {hf.DEFAULT_MODEL_NAME}")
    try:
        print(f"  packaged file: {hf.default_model_path()}")
    except ModelLoadError as exc:
        print(f"  not installed: {exc}")
    cache = hf.cache_dir() / "models"
    print(f"  cache folder: {cache}")
    if cache.is_dir():
        for entry in sorted(cache.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
                print(f"    {entry.name}  ({size / 1e6:.0f} MB)")
    print("other models: --model PATH (a local transformers folder or .gguf file) or a hub model id")
    return EXIT_OK


def cmd_bench(args) -> int:
    """Run ``bench/runtime.py`` of the source tree in the current folder."""
    root = Path.cwd()
    if not (root / "bench" / "runtime.py").is_file():
        raise UsageError(
            "the runtime benchmark lives in the source tree (bench/runtime.py); "
            "run `ppl bench` from the repository root"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    bench = importlib.import_module("bench.runtime")
    return int(bench.main(args.bench_args) or 0)


def _model_flags(run) -> None:
    run.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                     help="language model: a transformers folder, .gguf file or hub id, or a .py "
                          "file defining make_lm() (default: SmolLM2-135M-Instruct, packaged)")
    run.add_argument("--backend", default="hf", choices=available_backends(), metavar="NAME",
                     help="; ".join(f"{b}: {backend_summary(b)}" for b in available_backends())
                     + " (default: hf)")
    run.add_argument("--device", default=None, metavar="D", help="cpu or cuda (default: cuda if available)")
    run.add_argument("--threads", type=int, default=None, metavar="N",
                     help="torch CPU threads (default: OMP_NUM_THREADS if set, else half the CPUs, 1 to 8: "
                          "torch's own default of every core runs 5-20x slower on a busy small machine)")
    run.add_argument("--dtype", default=None, metavar="T", help="float32, bfloat16 or float16")


def _data_set_flags(run) -> None:
    many = run.add_argument_group(
        "data sets", "run the program on every line of a JSONL file of arguments (see docs/many.md)")
    many.add_argument("--inputs", default=None, metavar="FILE.jsonl",
                      help='one JSON object of arguments per line, with an optional "id" (default: the '
                           "line number); every line is checked before anything runs")
    many.add_argument("--output", default=None, metavar="OUT.jsonl",
                      help="append one JSON record per finished input; an existing file is resumed "
                           "(its ids are skipped) (default: records on stdout)")
    many.add_argument("--max-concurrent", type=int, default=None, metavar="M",
                      help=f"runs batched together at once ({DEFAULT_MAX_CONCURRENT})")
    many.add_argument("--top", type=int, default=None, metavar="K",
                      help=f"results kept per input, most probable first ({DEFAULT_TOP})")
    many.add_argument("--workers", type=int, default=None, metavar="W",
                      help="run on W Ray worker processes, each with its own model (with --ray-address "
                           "alone: the cluster's CPUs / T)")
    many.add_argument("--ray-address", default=None, metavar="ADDR",
                      help="run on the Ray cluster at ADDR (for example auto, or ray://HEAD:10001)")
    many.add_argument("--threads-per-worker", type=int, default=None, metavar="T",
                      help="torch threads of each Ray worker (1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppl", description="Steer language models with sequential Monte Carlo."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a steering program", description=cmd_run.__doc__ or
                         "Run a steering program and print its weighted results.")
    run.add_argument("program", metavar="PROGRAM", help="FILE.py or FILE.py:NAME")
    run.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                     help="a program argument (repeatable)")
    run.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                     help="a module or .py file registering @ppl.builtin functions (repeatable)")
    run.add_argument("--max-steps", type=int, default=None, metavar="N",
                     help="per-particle step limit for .steer programs (4096)")
    run.add_argument("--method", choices=list(methods()), default="steer", metavar="METHOD",
                     help="; ".join(f"{m.name}: {m.summary}" for m in methods().values())
                     + " (default: steer)")
    run.add_argument("--particles", type=int, default=16, metavar="N", help="number of particles (16)")
    run.add_argument("--expand", type=int, default=3, metavar="K", help="expansion factor for steer (3)")
    run.add_argument("--ess-threshold", type=float, default=0.5, metavar="X",
                     help="resample when ESS < X*N, for smc (0.5)")
    run.add_argument("--resampling", default="systematic", metavar="NAME",
                     help=f"the resampling scheme of smc: {', '.join(sorted(RESAMPLERS))} (systematic)")
    run.add_argument("--seed", type=int, default=None, metavar="S",
                     help="random seed (default: a fresh one for one run; 0 with --inputs, so that a "
                          "resumed run gives the results of an uninterrupted one)")
    _model_flags(run)
    run.add_argument("--json", default=None, metavar="OUT.json", help="also write the result as JSON")
    run.add_argument("--html", default=None, metavar="OUT.html",
                     help="also write a self-contained page showing every step")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    _data_set_flags(run)
    run.add_argument("--debug", action="store_true", help="show full tracebacks")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="check .steer programs without running them")
    check.add_argument("files", nargs="+", metavar="FILE.steer")
    check.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                       help="a module or .py file registering @ppl.builtin functions (repeatable)")
    check.add_argument("--debug", action="store_true", help="show full tracebacks")
    check.set_defaults(func=cmd_check)

    models = sub.add_parser("models", help="list the default model and where it is cached")
    models.add_argument("--debug", action="store_true", help="show full tracebacks")
    models.set_defaults(func=cmd_models)

    bench = sub.add_parser(
        "bench", help="run the runtime benchmark (from the source tree)", add_help=False,
        description="Runs `python -m bench.runtime` with the given arguments (try `ppl bench --help`).",
    )
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for bench.runtime")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["bench"]:  # everything after `bench` belongs to bench.runtime
        args = argparse.Namespace(func=cmd_bench, bench_args=argv[1:], debug=False)
    else:
        args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ArgumentError) as exc:  # bad input from the command line
        _report(args, exc, "usage error")
        return EXIT_USAGE
    except (ProgramFailed, PPLError) as exc:  # the program or the run failed
        _report(args, exc, "error")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # anything else is a bug in ppl: say so plainly
        _report(args, exc, "internal error")
        return EXIT_FAILURE


def _report(args, exc: BaseException, label: str) -> None:
    if getattr(args, "debug", False):
        traceback.print_exception(exc)
    message = str(exc)
    cause = exc.__cause__
    if cause is not None and not getattr(args, "debug", False) and str(cause) not in message:
        message += f"\n  caused by {type(cause).__name__}: {cause}"
    print(f"ppl: {label}: {message}", file=sys.stderr)
    if not getattr(args, "debug", False) and label != "usage error":
        print("(run with --debug for the full traceback)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
