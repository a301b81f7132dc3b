"""The command line's model flags, shared by ``ppl run`` and ``ppl eval``.

:func:`add_model_flags` adds ``--model``, ``--backend``, ``--device``,
``--threads`` and ``--dtype``; :func:`lm_factory_of` turns them into the model
factory of :func:`~ppl.program_files.lm_factory` (the program file's
``make_lm()``, a ``.py`` file's, or ``ppl.load_lm``), and :func:`make_lm`
builds the model from it; :class:`ChatModelFactory` is ``--chat``'s factory
for runs over a data set.
"""

from __future__ import annotations

from .program_files import build_lm, lm_factory
from .runtime.backends.registry import available_backends, backend_summary

__all__ = ["ChatModelFactory", "add_model_flags", "lm_factory_of", "make_lm"]


def add_model_flags(parser) -> None:
    parser.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                        help="language model: a transformers folder, .gguf file or hub id, or a .py "
                             "file defining make_lm() (default: the program file's make_lm(), else "
                             "SmolLM2-135M-Instruct, packaged)")
    parser.add_argument("--backend", default="hf", choices=available_backends(), metavar="NAME",
                        help="; ".join(f"{b}: {backend_summary(b)}" for b in available_backends())
                        + " (default: hf)")
    parser.add_argument("--device", default=None, metavar="D", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads (default: OMP_NUM_THREADS if set, else half the CPUs, 1 to "
                             "8: torch's own default of every core runs 5-20x slower on a busy small machine)")
    parser.add_argument("--dtype", default=None, metavar="T", help="float32, bfloat16 or float16")


def lm_factory_of(args, module):
    """The model factory of ``--model``/``--backend``/``--device``/``--dtype``/``--threads``."""
    given = (("device", args.device), ("dtype", args.dtype))
    if args.backend == "hf":  # the hf loader sets the threads (its default rule when None)
        given += (("threads", args.threads),)
    options = {k: v for k, v in given if v is not None}
    return lm_factory(args.model, module, backend=args.backend, **options)


def make_lm(args, module):
    return build_lm(lm_factory_of(args, module), args.model)


class ChatModelFactory:
    """A model factory whose models take plain prompts as chat messages
    (``--chat``: ``lm.use_chat(system=...)``); picklable when ``factory`` is,
    so Ray workers build the same model."""

    def __init__(self, factory, system: str | None = None) -> None:
        self.factory, self.system = factory, system

    def __call__(self):
        lm = self.factory()
        lm.use_chat(system=self.system)
        return lm
