"""The ``ppl`` command line.

::

    ppl run PROGRAM [--arg NAME=VALUE ...] [--import MODULE ...] [--max-steps N]
            [--method steer|smc|is] [--particles N]
            [--expand K] [--ess-threshold X] [--resampling NAME] [--seed S]
            [--model NAME_OR_PATH] [--device D] [--dtype T] [--json OUT.json]
            [--html OUT.html] [--history] [--top K] [--min-p X] [--verbose]
            [--quiet] [--debug]
    ppl run PROGRAM --inputs FILE.jsonl [--output OUT.jsonl] [--max-concurrent M]
            [--top K] [--workers W | --ray-address ADDR] [--threads-per-worker T] ...
    ppl eval PROGRAM --inputs FILE.jsonl --metric MODULE:FUNCTION --output DIR
            [--methods lcd,is,smc,steer] [--particles 1,4,16] [--seeds R] ...
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
import os
import secrets
import sys
import traceback
from pathlib import Path
from typing import Any

from .cli_eval import add_eval_parser
from .cli_map import DEFAULT_MAX_CONCURRENT, DEFAULT_TOP, add_ray_flags, check_flags, run_inputs
from .cli_model import ChatModelFactory, add_model_flags, lm_factory_of, make_lm
from .cli_output import DEFAULT_MIN_P, DEFAULT_SHOW, format_result, result_json, run_section
from .errors import ArgumentError, ModelLoadError, PPLError, UsageError
from .program_files import (
    ProgramFailed,
    build_arguments,
    find_program,
    import_extensions,
    program_parameters,
)
from .runtime.inference import get_method, methods
from .runtime.deaths import DeathTally, summarise
from .runtime.observers import Progress
from .runtime.resampling import RESAMPLERS

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


# -- commands ----------------------------------------------------------------------


def _threads() -> int | None:
    """torch's CPU threads in this process, if torch is loaded (for the header)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


#: the command line's step limit for every program (``--max-steps``): a run stops, with
#: status max_steps, instead of spinning forever on a program that never finishes
DEFAULT_MAX_STEPS = 4096


def _method_options(args) -> dict[str, Any]:
    """The options of ``--method`` that the command line sets: every option
    the method declares that has a command-line flag of the same name
    (``max_steps``: ``--max-steps``, else :data:`DEFAULT_MAX_STEPS`)."""
    method = get_method(args.method)
    options = {name: getattr(args, name) for name in method.options if hasattr(args, name)}
    if "max_steps" in options and options["max_steps"] is None:
        options["max_steps"] = DEFAULT_MAX_STEPS
    return options


def cmd_run(args) -> int:
    """Run a steering program and print its weighted results.

    PROGRAM is a .steer file (checked before it runs), or a Python file with a
    @ppl.program function or a ppl.Model subclass (FILE.py:NAME picks one).
    The table lists each distinct result with P, its normalised weight; texts
    are shown whole (--top and --min-p limit the rows)."""
    check_flags(args)
    import_extensions(args.imports)
    path, name, program, module = find_program(args.program, args.max_steps, args.time_limit)
    if args.inputs:
        factory = lm_factory_of(args, module) if program_parameters(program)[0] else None
        if factory is not None and args.chat:
            factory = ChatModelFactory(factory, args.system)
        return run_inputs(args, name, program, _method_options(args), factory)
    _, kwargs, wants_lm = build_arguments(program, name, args.arg)
    if args.threads is not None:  # also for a make_lm() model; the hf loader sets it again
        from .runtime.backends.hf.devices import set_threads

        set_threads(args.threads)
    lm = make_lm(args, module) if wants_lm else None
    if lm is not None and args.chat:
        _use_chat(lm, args.system)
    try:
        model = program(lm, **kwargs) if wants_lm else program(**kwargs)
    except PPLError as exc:
        raise UsageError(f"{path}: {exc}") from None
    except Exception as exc:
        raise ProgramFailed(f"{path}: building {name} raised {type(exc).__name__}: {exc}") from exc
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)  # recorded, so it can be rerun
    options: dict[str, Any] = {"n_particles": args.particles, "seed": seed, **_method_options(args)}
    tally = DeathTally()
    result = _infer(args, path, model, options, tally)
    deaths = summarise(result, tally)
    run = run_section(path=path, name=name, arguments=kwargs, lm=lm, backend=args.backend,
                      method=result.method, options=options, threads=_threads())
    written = _write_files(args, result, run, deaths)  # before printing: `| head` may close stdout
    settings = ", ".join(f"{k}={v}" for k, v in {**options, "threads": _threads()}.items() if v is not None)
    lm_name = lm.name if lm is not None else "no model"
    print(format_result(result, f"{name} on {lm_name}: {result.method} ({settings})",
                        top=args.top or DEFAULT_SHOW, min_p=args.min_p, verbose=args.verbose, deaths=deaths))
    for target in written:
        print(f"wrote {target}")
    return EXIT_FAILURE if _all_died(result) else EXIT_OK


def _use_chat(lm, system: str | None) -> None:
    """``--chat``: the program's plain prompts become user messages under the
    model's chat template (``lm.use_chat``)."""
    try:
        lm.use_chat(system=system)
    except ArgumentError as exc:
        raise UsageError(f"--chat: {exc}") from None


def _all_died(result) -> bool:
    return result.log_Z == float("-inf") or getattr(result, "status", None) in ("all_died", "all particles died")


def _infer(args, path, model, options: dict, tally):
    """Run the method with the progress line (on a terminal) and the death tally."""
    step_limit = args.max_steps or getattr(model, "max_steps", None)
    show_progress = not args.quiet and sys.stderr.isatty()
    progress = Progress(step_limit=step_limit) if show_progress else None

    def observe(info: dict) -> None:
        tally(info)
        if progress is not None:
            progress(info)

    extra: dict[str, Any] = {"history": bool(args.html or args.history)}
    try:
        return asyncio.run(get_method(args.method).run(model, **options, **extra, observer=observe))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    except PPLError as exc:
        raise ProgramFailed(f"{path}: {exc}") from exc
    finally:
        if progress:
            progress.close()


def _write_files(args, result, run: dict, deaths) -> list[str]:
    """Write ``--json`` and ``--html``; return what was written."""
    from .runtime.report.html import render_html

    written = []
    for target, write in ((args.json, lambda: result_json(result, run, deaths)),
                          (args.html, lambda: render_html(result, run=run))):
        if target:
            try:
                Path(target).write_text(write(), encoding="utf-8")
            except OSError as exc:
                raise ProgramFailed(f"could not write {target}: {exc}") from exc
            written.append(target)
    return written


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


def _output_flags(run) -> None:
    run.add_argument("--json", default=None, metavar="OUT.json",
                     help="also write the result as JSON, with what was run (program, arguments, model, "
                          "settings, threads, versions, seed)")
    run.add_argument("--html", default=None, metavar="OUT.html",
                     help="also write a self-contained page showing every step")
    run.add_argument("--history", action="store_true", help="record every step in --json (as --html does)")
    run.add_argument("--top", type=int, default=None, metavar="K",
                     help=f"results shown, most probable first ({DEFAULT_SHOW}); with --inputs: results "
                          f"kept per input ({DEFAULT_TOP})")
    run.add_argument("--min-p", type=float, default=DEFAULT_MIN_P, metavar="X",
                     help=f"fold results with P < X into one 'and N more' line ({DEFAULT_MIN_P})")
    run.add_argument("--verbose", action="store_true", help="also print ESS per step and the runtime counters")


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
    add_ray_flags(many)


def _doc(fn) -> str:
    import inspect

    return inspect.getdoc(fn) or ""


def _limit_and_chat_flags(run) -> None:
    run.add_argument("--max-steps", type=int, default=None, metavar="N",
                     help=f"stop the run after N steps, status max_steps (default {DEFAULT_MAX_STEPS}); "
                          ".steer programs also raise a located error past N steps of one particle")
    run.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                     help="wall-clock limit of one run of a .steer program, a located error past it (none)")
    run.add_argument("--chat", action="store_true",
                     help="send the program's prompts as user messages under the model's chat template "
                          "(for instruction-tuned models such as the default one)")
    run.add_argument("--system", default=None, metavar="TEXT", help="with --chat: a system message")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppl", description="Steer language models with sequential Monte Carlo."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a steering program (.steer or .py)", description=_doc(cmd_run),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("program", metavar="PROGRAM",
                     help="FILE.steer, FILE.py or FILE.py:NAME (a @ppl.program function or a ppl.Model class)")
    run.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                     help="a program argument (repeatable)")
    run.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                     help="a module or .py file registering @ppl.builtin functions (repeatable)")
    _limit_and_chat_flags(run)
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
    add_model_flags(run)
    _output_flags(run)
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

    add_eval_parser(sub)

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
    except BrokenPipeError:  # `ppl run ... | head` closed stdout: stop quietly
        _silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # anything else is a bug in ppl: say so plainly
        _report(args, exc, "internal error")
        return EXIT_FAILURE


def _silence_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's final flush
    does not fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


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
