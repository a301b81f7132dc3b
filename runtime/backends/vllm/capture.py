"""The one module that touches vLLM's engine internals: a logits processor
that hands full next-token logits rows to the backend.

vLLM's public API returns log-probabilities as Python dicts (49,152 entries
per row for SmolLM2), far too slow to serve as distributions. Instead
:class:`CaptureLogits`, registered with the engine (``LLM(...,
logits_processors=[CaptureLogits])``), sees the float32 logits tensor of every
batch the engine samples from, *before* any penalty, temperature or
restriction is applied (vLLM v1's sampler calls processors on the raw
logits), and copies the rows of the requests the backend tagged (each
request's ``SamplingParams.extra_args[TAG]`` is a unique integer) into
:data:`ROWS`. It returns the logits unchanged.

This needs the engine's model runner in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0`` and a single worker: tensor and
pipeline parallelism run the sampler in other processes, where the backend
uses vLLM's log-prob output instead; see :mod:`.engine_lm`).

The processor follows vLLM's persistent batch through ``update_state``
(requests removed, added, moved or swapped between batch rows). A request
that is prefilled in chunks may be seen more than once; the last row seen
before it finishes is the one after its whole prompt, so a later copy simply
replaces an earlier one.
"""

from __future__ import annotations

import itertools

import torch
from vllm.v1.sample.logits_processor import LogitsProcessor, MoveDirectionality

__all__ = ["TAG", "ROWS", "CaptureLogits", "new_tag", "take"]

#: the ``SamplingParams.extra_args`` key of a request's tag
TAG = "ppl_capture_tag"

#: captured logits rows (1-D float32 tensors on the CPU), by tag
ROWS: dict[int, torch.Tensor] = {}

_TAGS = itertools.count()


def new_tag() -> int:
    """A tag no other request of this process has."""
    return next(_TAGS)


def take(tags) -> list[torch.Tensor | None]:
    """The captured rows of ``tags`` (``None`` where nothing was captured),
    removed from :data:`ROWS`."""
    return [ROWS.pop(t, None) for t in tags]


class CaptureLogits(LogitsProcessor):
    """Copies the logits rows of tagged requests into :data:`ROWS`."""

    def __init__(self, vllm_config, device, is_pin_memory) -> None:
        self._tag_of_row: dict[int, int] = {}

    def is_argmax_invariant(self) -> bool:
        # False puts it among the processors vLLM always calls, greedy or not
        return False

    def update_state(self, batch_update) -> None:
        if batch_update is None:
            return
        rows = self._tag_of_row
        for index in batch_update.removed:
            rows.pop(index, None)
        for index, params, _prompt, _output in batch_update.added:
            tag = (getattr(params, "extra_args", None) or {}).get(TAG)
            if tag is None:
                rows.pop(index, None)
            else:
                rows[index] = tag
        for a, b, direction in batch_update.moved:
            tag_a, tag_b = rows.pop(a, None), rows.pop(b, None)
            if tag_a is not None:
                rows[b] = tag_a
            if direction == MoveDirectionality.SWAP and tag_b is not None:
                rows[a] = tag_b

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        n = logits.shape[0]
        for index, tag in self._tag_of_row.items():
            if index < n:
                ROWS[tag] = logits[index].detach().to("cpu", torch.float32, copy=True)
        return logits
