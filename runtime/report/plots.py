"""Plots of an inference run (matplotlib, the optional ``plot`` extra).

``plot(result)`` draws two panels: the effective sample size after every
step (dots mark the steps after which the population was resampled), and the
spread of the normalised weights ``W`` per step — every candidate particle of
every step when the run recorded its history, the final weights otherwise.
"""

from __future__ import annotations

import numpy as np

from ..resampling import normalise


def plot(result, path=None, *, figsize=(9.0, 3.4)):
    """Draw the figure; save it to ``path`` when given; return it."""
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "result.plot() needs matplotlib: pip install 'ppl-steer[plot]' (or matplotlib)"
        ) from exc

    fig, (ax_ess, ax_w) = plt.subplots(1, 2, figsize=figsize, constrained_layout=True)
    steps = np.arange(1, len(result.ess) + 1)
    ax_ess.plot(steps, result.ess, color="#4a7fd4", label="ESS")
    marked = [s for s in result.resampled_at if 1 <= s <= len(result.ess)]
    if marked:
        ax_ess.scatter(marked, [result.ess[s - 1] for s in marked], color="#d4574a", s=14,
                       zorder=3, label="resampled after")
    ax_ess.set(xlabel="step", ylabel="effective sample size", title="ESS per step")
    ax_ess.set_ylim(bottom=0)
    ax_ess.legend(frameon=False, fontsize=8)

    if result.history:
        for record in result.history:
            lw = np.array([np.nan if p["log_weight"] is None else p["log_weight"]
                           for p in record["particles"]], dtype=np.float64)
            W = normalise(np.nan_to_num(lw, nan=-np.inf))
            live = W > 0
            ax_w.scatter(np.full(live.sum(), record["step"]), W[live], s=6, alpha=0.5, color="#4a7fd4")
        ax_w.set(xlabel="step", ylabel="normalised weight W", title="weights per step (candidates)")
    else:
        W = result.weights[result.weights > 0]
        ax_w.hist(W, bins=min(30, max(5, len(W))), color="#4a7fd4")
        ax_w.set(xlabel="normalised weight W", ylabel="particles",
                 title="final weights (run with history=True for every step)")
    fig.suptitle(f"{result.method}: N={result.n_particles}, log Z = {result.log_Z:.4f}", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
