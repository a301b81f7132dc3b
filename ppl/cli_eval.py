"""``ppl eval PROGRAM --inputs DATA.jsonl --metric MODULE:FUNCTION --output DIR``.

Runs the program on every line of the input file under every configuration
``(method, N, replicate)`` of ``--methods`` x ``--particles`` x ``--seeds``
(see :mod:`ppl.evaluation.sweep`), scores every run with ``--metric``, and
writes ``DIR/results.jsonl`` (one line per run; a rerun skips the runs
already there), ``DIR/summary.csv``, ``DIR/summary.md``,
``DIR/metric_vs_compute.png`` (with matplotlib) and ``DIR/report.html``.
The table is also printed. Every input line and every setting is checked
before anything runs (exit status 2). Exit status 0 when every run is
``ok``, 1 when any raised or had every particle die.

``--workers W`` / ``--ray-address ADDR`` (with ``--threads-per-worker T``),
the flags of ``ppl run --inputs``, run every configuration on Ray workers,
each building the model from its specification (``--model`` ... or the
program file's ``make_lm()``); a metric that takes ``lm`` gets one more,
built in this process. The records are those of a local evaluation.
"""

from __future__ import annotations

import sys

from .cli_map import add_ray_flags, check_ray_flags, engine_options
from .cli_model import add_model_flags, lm_factory_of
from .errors import PPLError, UsageError
from .evaluation import (
    DEFAULT_METHODS,
    DEFAULT_PARTICLES,
    configurations,
    evaluate,
    resolve_metric,
)
from .evaluation.metrics import wants_lm
from .evaluation.summary import to_markdown
from .evaluation.sweep import method_options
from .inputs import read_inputs
from .program_files import (
    ProgramFailed,
    convert_arguments,
    find_program,
    import_extensions,
    program_parameters,
)
from .runtime.inference import methods as registered_methods
from .runtime.many.local import check_settings

__all__ = ["add_eval_parser", "cmd_eval"]


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--particles {text}: expected integers separated by commas, such as 1,4,16") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--particles {text}: particle counts are integers >= 1, such as 1,4,16")
    return values


def _methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    known = registered_methods()
    unknown = [m for m in names if m not in known]
    if unknown or not names:
        raise UsageError(f"--methods {text}: unknown method {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"the methods: {', '.join(known)}")
    return names


def _options(args) -> dict:
    out = {"expand": args.expand}
    if args.ess_threshold is not None:
        out["ess_threshold"] = args.ess_threshold
    if args.resampling is not None:
        out["resampling"] = args.resampling
    return out


def _check(methods, particles, options, seeds) -> None:
    """Every configuration's settings, before anything is loaded."""
    try:
        configurations(methods, particles, seeds)
        for m in methods:
            for n in particles:
                check_settings(m, n, method_options(m, options))
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def _progress(total: int, done: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="ppl eval", unit="run", file=sys.stderr, disable=not show,
                dynamic_ncols=True)


def cmd_eval(args) -> int:
    """``ppl eval``: see the module docstring."""
    import_extensions(args.imports)
    methods, particles = _methods(args.methods), _int_list(args.particles)
    options = _options(args)
    _check(methods, particles, options, args.seeds)
    check_ray_flags(args)
    metric = resolve_metric(args.metric)
    _, name, program, module = find_program(args.program, args.max_steps)
    inputs = read_inputs(args.inputs, program, convert_arguments(program, name, args.arg))
    needed = program_parameters(program)[0] or wants_lm(metric)
    engine = engine_options(args, lm_factory_of(args, module) if needed else None)  # the model, or Ray's
    total = len(inputs) * len(methods) * len(particles) * args.seeds
    bar = _progress(total, 0, not args.quiet and sys.stderr.isatty())
    try:
        result = evaluate(program, [i.args for i in inputs], ids=[i.id for i in inputs], metric=metric,
                          methods=methods, particles=particles, expand=args.expand, seeds=args.seeds,
                          seed=args.seed, output=args.output, max_concurrent=args.max_concurrent, top=args.top,
                          options={k: v for k, v in options.items() if k != "expand"},
                          on_record=lambda record: bar.update(1), **engine)
    except ValueError as exc:  # a bad setting or a bad output folder (ArgumentError)
        raise UsageError(str(exc)) from exc
    except PPLError as exc:
        raise ProgramFailed(str(exc)) from exc
    finally:
        bar.close()
    print(to_markdown(result.rows, result.metric_names), end="")
    bad = sum(r["died"] + r["errors"] for r in result.rows)
    earlier = f" ({total - result.ran} from an earlier run)" if result.ran < total else ""
    print(f"ppl: {total} runs{earlier}, {bad} died or raised; wrote "
          + ", ".join(str(p) for p in result.files.values()), file=sys.stderr)
    return 0 if bad == 0 else 1


def add_eval_parser(subparsers) -> None:
    """The ``eval`` command on ``ppl``'s subparsers."""
    p = subparsers.add_parser("eval", help="evaluate a program: methods x particle counts over a data set",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("program", metavar="PROGRAM", help="FILE.py, FILE.py:NAME or FILE.steer")
    p.add_argument("--inputs", required=True, metavar="DATA.jsonl", help="one JSON object of arguments per line")
    p.add_argument("--metric", required=True, metavar="MODULE:FUNCTION",
                   help="metric(input, result) -> float or dict of floats (MODULE: a module or a .py file), "
                        "or a built-in: valid")
    p.add_argument("--output", required=True, metavar="DIR", help="the output folder (an existing one is resumed)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), metavar="M,M,...",
                   help=f"registered methods, comma-separated ({','.join(DEFAULT_METHODS)})")
    p.add_argument("--particles", default=",".join(map(str, DEFAULT_PARTICLES)), metavar="N,N,...",
                   help=f"particle counts, comma-separated ({','.join(map(str, DEFAULT_PARTICLES))})")
    p.add_argument("--expand", type=int, default=3, metavar="K", help="expansion factor for steer (3)")
    p.add_argument("--ess-threshold", type=float, default=None, metavar="X", help="for smc (0.5)")
    p.add_argument("--resampling", default=None, metavar="NAME", help="resampling scheme for smc (systematic)")
    p.add_argument("--seeds", type=int, default=1, metavar="R", help="replicates of every configuration (1)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="replicate r runs ppl.map(seed=S + r) (0)")
    p.add_argument("--max-concurrent", type=int, default=1, metavar="M",
                   help="runs batched together, per Ray worker with --workers (1: each run's compute "
                        "counters are its own)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="results kept per run (5)")
    p.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="a program argument for every input (repeatable)")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="a module or .py file registering @ppl.builtin functions (repeatable)")
    p.add_argument("--max-steps", type=int, default=None, metavar="N", help="step limit for .steer programs")
    add_model_flags(p)
    add_ray_flags(p.add_argument_group("Ray", "run the configurations on Ray workers (see docs/evaluating.md)"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=cmd_eval)
