"""What a sample statement draws from, at run time:
``x ~ p [where C] [where_checked PRED] [proposal q [where D]]``.

- ``where C``: ``p`` restricted by the token constraint ``C``, the measure
  ``p(x) 1[x in C]`` (``p.where(C)`` of the Python API);
- ``where_checked PRED``: ``p`` restricted to tokens ``x`` with
  ``PRED(text + text(x))`` true, ``text`` being what the context generated
  so far, sampled by AWRS (``p.where_checked(PRED)``): exact, with an
  unbiased weight for the mass; ``where_checked NAME: TEST`` is the same
  with the predicate written in the language (``TEST`` with ``NAME`` bound
  to the text, :func:`written_predicate`);
- ``proposal q [where D]``: ``x ~ q/|q|`` (``q`` restricted by ``D``) and the
  weight is multiplied by ``p(x) / (q(x)/|q|)``, as ``sample(p, proposal=q)``.

:func:`sample_spec` turns a :class:`~ppl.dsl.ast.Sample` into one closure
``env -> (p, q or None)``; the interpreter draws from them.
:func:`predicate` makes a builtin (``str -> bool``) the Python predicate that
``where_checked`` and ``token_predicate`` need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..constraints import SequenceConstraint, TokenConstraint, as_token_constraint
from ..distributions import CheckedNextToken, Distribution, NextToken
from ..errors import ModelError
from . import ast
from .builtins import Builtin
from .errors import Failure
from .limits import OpError
from .values import show

#: distributions over a context's next token (drawing one is a token primitive)
TOKEN_DISTS = (NextToken, CheckedNextToken)


def predicate(entry: Builtin) -> Callable[[str], bool]:
    """``entry`` as a predicate on text: ``entry(text)`` must be a bool."""

    def pred(text: str) -> bool:
        value = entry.call((text,))
        if not isinstance(value, bool):
            raise OpError(f"the predicate {entry.name}() must return True or False, got {show(value)}")
        return value

    pred.__name__ = entry.name
    return pred


def written_predicate(p: ast.Predicate, test: Callable[[dict], Any], fail: Failure, scope: str = ""
                      ) -> Callable[[dict], Callable[[str], bool]]:
    """``where_checked NAME: TEST`` as ``env -> pred``: ``pred(text)`` is the
    value of ``TEST`` in the particle's environment ``env`` (as it is when
    the token is drawn) with ``NAME`` (``scope + NAME`` in ``env``) bound to
    ``text``; it must be a bool."""
    name = p.param.id
    key = scope + name
    line = fail.lines[p.line - 1] if 1 <= p.line <= len(fail.lines) else ""
    label = line[p.column - 1:p.end_column - 1] if p.end_line == p.line and line else f"{name}: ..."
    label = label if len(label) <= 60 else label[:57] + "..."

    def make(env: dict) -> Callable[[str], bool]:
        local = dict(env)

        def pred(text: str) -> bool:
            local[key] = text
            value = test(local)
            if not isinstance(value, bool):
                fail(p.test, f"the test of 'where_checked {name}: TEST' must be True or False; got {show(value)}")
            return value

        pred.__name__ = label
        return pred

    return make


def restrict(dist, constraint, node: ast.Sample, where: ast.Expr, dist_node: ast.Expr, fail: Failure):
    """``dist where constraint``, or a located error."""
    if isinstance(constraint, SequenceConstraint):
        fail(where, f"{constraint!r} constrains a whole text, not one token: attach it "
             "to the context, ctx = lm(prompt, constraint)")
    if not isinstance(dist, NextToken):
        fail(dist_node, "'where' applies only to a next-token distribution (ctx.next_token()); "
             f"got {show(dist)}")
    try:
        return dist.where(constraint if isinstance(constraint, TokenConstraint) else as_token_constraint(constraint))
    except (ValueError, ModelError) as exc:
        fail(where, f"'where' needs a token constraint such as lacks(\"e\"); {exc}", cause=exc)
    except OpError as exc:  # a token_predicate's builtin failed on a token's text
        fail(where, str(exc), cause=exc)


def sample_spec(s: ast.Sample, closure: Callable[[ast.Expr], Callable], registry, fail: Failure,
                scope: str = "") -> Callable[[dict], tuple[Any, Any]]:
    """The closure ``env -> (target, proposal or None)`` of ``s`` (its names
    under ``scope`` in ``env``)."""
    dist_f = closure(s.dist)
    where_f = closure(s.where) if s.where is not None else None
    if isinstance(s.checked, ast.Predicate):
        make_pred = written_predicate(s.checked, closure(s.checked.test), fail, scope)
    else:
        pred = predicate(registry[s.checked.id]) if isinstance(s.checked, ast.Name) and s.checked.id in registry \
            else None
        make_pred = lambda env: pred  # noqa: E731
    q_f = closure(s.proposal) if s.proposal is not None else None
    q_where_f = closure(s.proposal_where) if s.proposal_where is not None else None

    def spec(env):
        dist = dist_f(env)
        if where_f is not None:
            dist = restrict(dist, where_f(env), s, s.where, s.dist, fail)
        if s.checked is not None:
            dist = _checked(dist, make_pred(env), s, fail)
        if q_f is None:
            return dist, None
        q = q_f(env)
        if q_where_f is not None:
            q = restrict(q, q_where_f(env), s, s.proposal_where, s.proposal, fail)
        return dist, _proposal(dist, q, s, fail)

    return spec


def _checked(dist, pred, s: ast.Sample, fail: Failure):
    if pred is None:  # the checker reports it
        fail(s.checked, "where_checked needs the name of a builtin taking a str and returning a bool")
    if not isinstance(dist, NextToken):
        fail(s.dist, f"'where_checked' applies only to a next-token distribution (ctx.next_token()); got {show(dist)}")
    try:
        return dist.where_checked(pred)
    except (ValueError, ModelError) as exc:
        fail(s.checked, str(exc), cause=exc)


def _proposal(dist, q, s: ast.Sample, fail: Failure):
    if not isinstance(q, Distribution):
        fail(s.proposal, f"a proposal must be a distribution; got {show(q)}")
    if isinstance(dist, CheckedNextToken) or isinstance(q, CheckedNextToken):
        fail(s.proposal, "a proposal cannot be combined with where_checked: AWRS draws its own tokens")
    if isinstance(dist, NextToken) != isinstance(q, NextToken):
        fail(s.proposal, "the proposal of a next-token distribution must be a next-token distribution "
             "of the same context, and only of one; got " + show(q))
    if isinstance(dist, NextToken) and q.context is not dist.context:
        fail(s.proposal, "the proposal must draw the next token of the same context as the target")
    return q
