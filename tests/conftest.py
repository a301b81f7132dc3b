"""Fixtures shared by every test folder.

The folders follow the layout of the code: ``language/`` (models, programs),
``inference/`` (algorithms, resampling, results), ``constraints/``,
``dsl/``, ``backends/`` (toy, transformers, the KV trie), ``many/`` (runs
over data sets), ``cli/``,
``gallery/`` and ``project/`` (packaging, the import layers, the docs).
Helpers shared across folders live in ``support/`` (exact enumeration,
statistical checks, toy programs, tiny models), imported as
``from support.stats import check_mean`` (``pythonpath = ["tests"]``).
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The tests' models are tiny or small: one thread is fastest, and on a
    busy 2-core machine torch's default threads can run 5-20x slower."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def default_lm():
    """The packaged default model (SmolLM2-135M-Instruct), loaded once per
    session; for tests marked ``slow``."""
    import ppl

    return ppl.load_lm()


@pytest.fixture
def replay_cloning(monkeypatch):
    """``@ppl.program`` particles cloned by replaying their trace, as where
    their coroutines cannot be copied (``ProgramModel.copy_frames``)."""
    import sys

    import ppl  # noqa: F401 - ppl.program the module, not the decorator

    monkeypatch.setattr(sys.modules["ppl.program"].ProgramModel, "copy_frames", False)
