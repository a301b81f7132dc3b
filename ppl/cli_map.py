"""``ppl run PROGRAM --inputs FILE.jsonl``: one program over a data set.

Every line of the input file is checked first (:mod:`ppl.inputs`); nothing
runs if one is bad (exit status 2). The runs go through :func:`ppl.map`
(cross-run batching in this process, or Ray workers with ``--workers`` /
``--ray-address``), and each finished run's record is appended to
``--output`` at once (:mod:`ppl.runtime.many.output`), or printed on stdout
when ``--output`` is not given. Running the same command again resumes: the
ids already in the output are skipped, and since input ``i`` is seeded by
``run_seed(seed, i)`` (``--seed`` defaults to 0 here) the results are those
of an uninterrupted run. A progress bar over the inputs shows on stderr
when it is a terminal; a summary line ends the run. Exit status 0 when every
input's run is ``ok``, 1 when any raised or had all its particles died.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from .errors import PPLError, UsageError
from .inputs import read_inputs
from .mapping import map as map_inputs
from .program_files import ProgramFailed, build_lm, convert_arguments
from .runtime.many.local import check_settings
from .runtime.many.output import RecordStream, ResultsFile, record_of

__all__ = ["DEFAULT_MAX_CONCURRENT", "DEFAULT_TOP", "add_ray_flags", "check_flags", "check_ray_flags",
           "engine_options", "run_inputs"]

DEFAULT_MAX_CONCURRENT, DEFAULT_TOP = 8, 5
OK, DIED, ERROR = "ok", "all particles died", "error"

#: flags that only make sense with --inputs (attribute, flag)
_DATA_SET_FLAGS = [("output", "--output"), ("max_concurrent", "--max-concurrent"),
                   ("workers", "--workers"), ("ray_address", "--ray-address"),
                   ("threads_per_worker", "--threads-per-worker")]


def check_flags(args) -> None:
    """``UsageError`` for flags that do not go together (before anything is loaded)."""
    if args.top is not None and args.top < (0 if args.inputs else 1):
        what = "results to keep per input is an integer >= 0" if args.inputs else "results to show is an integer >= 1"
        raise UsageError(f"--top {args.top}: the number of {what}")
    if not args.inputs:
        given = [flag for attr, flag in _DATA_SET_FLAGS if getattr(args, attr) is not None]
        if given:
            raise UsageError(f"{', '.join(given)} go{'es' * (len(given) == 1)} with --inputs FILE.jsonl")
        return
    for attr, flag in (("json", "--json"), ("html", "--html")):
        if getattr(args, attr):
            raise UsageError(f"{flag} writes one run's result; with --inputs every result goes to --output")
    check_ray_flags(args)
    if args.output and Path(args.output).resolve() == Path(args.inputs).resolve():
        raise UsageError(f"--output {args.output} is the input file; write the results elsewhere")


def add_ray_flags(group) -> None:
    """``--workers``, ``--ray-address`` and ``--threads-per-worker`` on a
    parser or argument group (``ppl run --inputs``, ``ppl eval``)."""
    group.add_argument("--workers", type=int, default=None, metavar="W",
                       help="run on W Ray worker processes, each with its own model (with --ray-address "
                            "alone: the cluster's CPUs / T)")
    group.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="run on the Ray cluster at ADDR (for example auto, or ray://HEAD:10001)")
    group.add_argument("--threads-per-worker", type=int, default=None, metavar="T",
                       help="torch threads of each Ray worker (1)")


def check_ray_flags(args) -> None:
    """``UsageError`` for ``--threads-per-worker`` without Ray."""
    if args.threads_per_worker is not None and args.workers is None and args.ray_address is None:
        raise UsageError("--threads-per-worker goes with --workers or --ray-address")


def _default(value, default):
    return default if value is None else value


def _check_settings(method: str, n_particles: int, options: dict) -> None:
    """``UsageError`` for a bad setting (``--resampling bogus``,
    ``--ess-threshold 2``), found once before anything runs rather than
    as an error record for every input."""
    try:
        check_settings(method, n_particles, options)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def engine_options(args, factory: Callable[[], Any] | None) -> dict:
    """``ppl.map``'s keywords for where the runs go: this process (the model
    built here) or Ray workers (each builds its own from ``factory``)."""
    if args.workers is None and args.ray_address is None:
        return {"lm": None if factory is None else build_lm(factory, args.model)}
    ray = {"num_workers": args.workers, "address": args.ray_address, "threads_per_worker": args.threads_per_worker}
    return {"engine": "ray", "lm": factory, **{k: v for k, v in ray.items() if v is not None}}


class _Progress:
    """A progress bar over the inputs (tqdm) on stderr, when it is shown."""

    def __init__(self, total: int, done: int, name: str, show: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=done, desc=name, unit="input", file=sys.stderr,
                        disable=not show, dynamic_ncols=True, smoothing=0.1)

    def update(self, counts: Counter) -> None:
        self.bar.set_postfix_str(f"{counts[ERROR]} errors, {counts[DIED]} died", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _stdout_line(line: str) -> None:
    """A record on stdout that does not garble a progress bar on the same terminal."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stdout)


def _summary(total: int, counts: Counter, resumed: int, where: str) -> str:
    earlier = f" ({resumed} from an earlier run)" if resumed else ""
    errors = f"{counts[ERROR]} error{'s' * (counts[ERROR] != 1)}"
    return (f"ppl: {total} inputs: {counts[OK]} ok, {counts[DIED]} died, {errors}; "
            f"results in {where}{earlier}")


def _open_output(args):
    if args.output is None:
        return RecordStream(sys.stdout, write=_stdout_line)
    try:
        return ResultsFile(args.output)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _run(args, program, inputs, out, done: set, counts: Counter, progress: _Progress, map_options: dict):
    try:
        outcomes = map_inputs(program, [i.args for i in inputs], ids=[i.id for i in inputs], skip=done,
                              **map_options)
        for outcome in outcomes:
            out.append(record_of(outcome, _default(args.top, DEFAULT_TOP)))
            counts[outcome.status] += 1
            progress.update(counts)
    except ValueError as exc:  # a bad setting (ArgumentError), found before the first run
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise ProgramFailed(f"could not write {args.output}: {exc}") from exc
    except PPLError as exc:
        raise ProgramFailed(str(exc)) from exc


def run_inputs(args, name: str, program, options: dict, factory: Callable[[], Any] | None) -> int:
    """``ppl run PROGRAM --inputs FILE``; ``options`` are the method's,
    ``factory`` builds the model (``None``: the program takes none)."""
    _check_settings(args.method, args.particles, options)
    inputs = read_inputs(args.inputs, program, convert_arguments(program, name, args.arg))
    map_options = dict(method=args.method, n_particles=args.particles, seed=_default(args.seed, 0),
                       max_concurrent=_default(args.max_concurrent, DEFAULT_MAX_CONCURRENT),
                       **options, **engine_options(args, factory))
    with _open_output(args) as out:
        done = {i.id for i in inputs if i.id in out.previous}
        counts = Counter(out.previous[i]["status"] for i in done)
        progress = _Progress(len(inputs), len(done), name, not args.quiet and sys.stderr.isatty())
        try:
            _run(args, program, inputs, out, done, counts, progress, map_options)
        except KeyboardInterrupt:
            progress.close()
            if args.output:
                print(f"ppl: interrupted; the finished runs are in {args.output}: run the same "
                      "command again to resume", file=sys.stderr)
            raise
        finally:
            progress.close()
    print(_summary(len(inputs), counts, len(done), args.output or "stdout"), file=sys.stderr)
    return 0 if counts[OK] == len(inputs) else 1
