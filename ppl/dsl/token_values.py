"""The token an ``observe ctx.next_token() = v`` observes, from what ``v`` is.

A next token is observed as a :class:`~ppl.distributions.Token`, its text
(which must be exactly one token of the model's vocabulary), its id, or
``EOS``. Anything else is a located error (``fail(node, message)``).
"""

from __future__ import annotations

from ..distributions import NextToken, Token
from .values import EOS, brief, short, show


def token_id(dist: NextToken, value, node, fail) -> int:
    """The vocabulary id of ``value`` observed on ``dist``; ``fail(node.value,
    message, cause=...)`` raises the located error when it is not one token."""
    lm = dist.context.lm
    if isinstance(value, Token):
        return value.id
    if value is EOS:
        return lm.eos_token_id
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < lm.vocab_size:
            fail(node.value, f"token id {show(value)} is outside the vocabulary (size {lm.vocab_size})")
        return value
    if isinstance(value, str):
        try:
            ids = [int(t) for t in lm.encode(value)]
        except Exception as exc:
            fail(node.value, f"cannot tokenise {short(value)}: {brief(str(exc))}", cause=exc)
        if len(ids) != 1:
            fail(node.value, f"{short(value)} is {len(ids)} tokens, not one; to observe a whole string, "
                 "observe the context: observe ctx = \"...\"")
        return ids[0]
    fail(node.value, f"a next token is observed as a token, its text, its id or EOS; got {show(value)}")
