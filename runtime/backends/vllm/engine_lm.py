"""A :class:`~ppl.runtime.lm.LanguageModel` served by a vLLM engine.

:meth:`VLLMLanguageModel.batch_next_token_logprobs` answers one scheduler
flush with **one** engine call: every distinct prefix becomes a request for a
single token (``max_tokens=1``, greedy, so sampling costs nothing), and the
full next-token distribution of each is read from the engine:

- ``capture="logits"`` (the default with one worker): the raw float32 logits
  row, copied by :class:`~.capture.CaptureLogits` inside the engine, then
  ``log_softmax`` over the tokenizer's vocabulary ``V`` (logit columns past
  ``V``, padding of the embedding matrix, are dropped first, as the HF
  backend does);
- ``capture="logprobs"`` (chosen when tensor or pipeline parallelism puts the
  sampler in other processes): vLLM's own full-vocabulary log-prob output
  (``logprobs=-1``), renormalised over ``V``. Exact, but vLLM hands it over
  as Python dicts, a few milliseconds per row.

vLLM's automatic prefix caching does the prefix trie's job: a request whose
prefix shares whole KV blocks with an earlier one reuses them. There is no
pinning (:meth:`pin` returns ``None``); vLLM evicts blocks least recently
used. The vocabulary, its bytes, EOS and the special ids come from the
model's Hugging Face tokenizer exactly as for the HF backend
(:class:`~ppl.runtime.backends.hf.tokenizer_text.TokenizerText`), so every
constraint works unchanged.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from ppl.errors import ArgumentError, ForwardError, TokenIdError

from ...lm import LanguageModel
from ..hf.tokenizer_text import TokenizerText
from . import capture

__all__ = ["VLLMLanguageModel", "CAPTURE_MODES"]

CAPTURE_MODES = ("logits", "logprobs")


class VLLMLanguageModel(TokenizerText, LanguageModel):
    """Next-token log-probabilities from a ``vllm.LLM`` engine (see the module
    docstring). ``vocab``/``vocab_bytes``/``eos_token_id`` stand in for a
    tokenizer (``tokenizer=None``). ``llm`` must have been built with
    ``logits_processors=[CaptureLogits]`` for ``capture="logits"``, and with
    ``max_logprobs=-1`` for ``capture="logprobs"``."""

    def __init__(self, llm, tokenizer, *, name: str, capture: str = "logits", vocab=None,
                 vocab_bytes=None, eos_token_id: int | None = None) -> None:
        if capture not in CAPTURE_MODES:
            raise ArgumentError(f"capture must be one of {', '.join(CAPTURE_MODES)}, not {capture!r}")
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self._SamplingParams, self._TokensPrompt = SamplingParams, TokensPrompt
        self.llm = llm
        self.name = name
        self.capture = capture
        if tokenizer is not None:
            self._set_tokenizer_vocab(tokenizer)
        elif vocab is None or vocab_bytes is None or eos_token_id is None:
            raise ArgumentError("a VLLMLanguageModel without a tokenizer needs vocab=, vocab_bytes= and eos_token_id=")
        else:  # a model without a tokenizer (tests): the tables as given
            self.vocab, self.vocab_bytes, self.eos_token_id = list(vocab), list(vocab_bytes), int(eos_token_id)
        self.max_model_len = int(llm.llm_engine.model_config.max_model_len)
        self.load_info = None
        self._c = dict(engine_calls=0, requests=0, rows_sent=0, tokens_sent=0, engine_seconds=0.0)

    def __repr__(self) -> str:
        return f"VLLMLanguageModel({self.name!r}, capture={self.capture!r})"

    # ------------------------------------------------------------- protocol
    def batch_next_token_logprobs(self, prefixes: Sequence[Sequence[int]]) -> list[np.ndarray]:
        keys = [tuple(int(t) for t in p) for p in prefixes]
        unique = list(dict.fromkeys(keys))
        self._check(unique)
        self._c["requests"] += len(keys)
        self._c["rows_sent"] += len(unique)
        self._c["tokens_sent"] += sum(len(p) for p in unique)
        t0 = time.perf_counter()
        rows = self._by_capture(unique) if self.capture == "logits" else self._by_logprobs(unique)
        self._c["engine_calls"] += 1
        self._c["engine_seconds"] += time.perf_counter() - t0
        answer = dict(zip(unique, rows))
        return [answer[k] for k in keys]

    def stats(self) -> dict:
        out = dict(self._c)
        out["engine_seconds"] = round(out["engine_seconds"], 4)
        return out

    # ------------------------------------------------------------- checks
    def _check(self, prefixes: list[tuple[int, ...]]) -> None:
        V = len(self.vocab)
        for p in prefixes:
            if not p:
                raise ArgumentError(
                    f"{self.name!r}: an empty prefix has no position to predict from; "
                    "start contexts with lm.prompt_ids(...) (BOS first)"
                )
            bad = next((t for t in p if not 0 <= t < V), None)
            if bad is not None:
                raise TokenIdError(
                    f"token id {bad} at position {p.index(bad)} of a prefix of length {len(p)} "
                    f"is outside the vocabulary of {self.name!r} (ids must be in 0..{V - 1})"
                )
            if len(p) + 1 > self.max_model_len:
                raise ArgumentError(
                    f"a prefix of {len(p)} tokens does not fit the vLLM engine's max_model_len of "
                    f"{self.max_model_len} (the prefix and the predicted token must fit); load the "
                    f"model with a larger max_model_len= if the model allows it"
                )

    # ------------------------------------------------------------- engine calls
    def _generate(self, prefixes, params) -> list:
        prompts = [self._TokensPrompt(prompt_token_ids=list(p)) for p in prefixes]
        try:
            return self.llm.generate(prompts, params, use_tqdm=False)
        except Exception as exc:  # the engine's own reason, with the model's name
            raise ForwardError(
                f"the vLLM engine of {self.name!r} failed on a batch of {len(prefixes)} prefixes: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _by_capture(self, prefixes) -> list[np.ndarray]:
        tags = [capture.new_tag() for _ in prefixes]
        params = [
            self._SamplingParams(max_tokens=1, temperature=0.0, detokenize=False, extra_args={capture.TAG: t})
            for t in tags
        ]
        try:
            self._generate(prefixes, params)
        finally:
            rows = capture.take(tags)  # taken even from a failed call: nothing stays behind
        missing = [i for i, r in enumerate(rows) if r is None]
        if missing:
            raise ForwardError(
                f"the vLLM engine of {self.name!r} returned no logits for {len(missing)} of "
                f"{len(prefixes)} prefixes: its logits processor did not run in this process "
                "(load with capture='logprobs' when the engine runs in worker processes)"
            )
        V = len(self.vocab)
        logits = torch.stack(rows)[:, :V]
        return list(torch.log_softmax(logits, dim=-1).numpy())

    def _by_logprobs(self, prefixes) -> list[np.ndarray]:
        params = self._SamplingParams(max_tokens=1, temperature=0.0, detokenize=False, logprobs=-1)
        outs = self._generate(prefixes, params)
        V = len(self.vocab)
        rows = []
        for out in outs:
            full = np.full(V, -np.inf, dtype=np.float64)
            for token, lp in out.outputs[0].logprobs[0].items():
                if token < V:
                    full[token] = lp.logprob
            top = full.max()
            full -= top + np.log(np.exp(full - top).sum())  # renormalise over V
            rows.append(full.astype(np.float32))
        return rows
