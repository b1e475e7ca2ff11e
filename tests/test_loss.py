"""The fused LM head + loss equals plain PyTorch in every plan, and the plan is measured once per machine."""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from picollm.fused_head import LIBRARIES, HeadPlan
from picollm.head_plan import chunk_candidates, libraries, plan_record
from picollm.loss import linear_cross_entropy

ROOT = Path(__file__).resolve().parents[1]
PLANS = [HeadPlan(chunk, logits, grad_h) for chunk in (7, 64, 300) for logits in LIBRARIES for grad_h in LIBRARIES]
PLANS.append(HeadPlan(64, plain_rows=300))  # few rows: the plan's plain autograd path


def head_problem(bias: bool, n=300, vocab=50, hidden=16):
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(n, hidden, generator=gen, requires_grad=True)
    w = (torch.randn(vocab, hidden, generator=gen) * 0.3).requires_grad_()
    b = (torch.randn(vocab, generator=gen) * 0.3).requires_grad_() if bias else None
    y = torch.randint(0, vocab, (n,), generator=gen)
    return h, w, b, y


def loss_and_grads(loss_fn, h, w, b, y):
    params = [t for t in (h, w, b) if t is not None]
    for t in params:
        t.grad = None
    loss = loss_fn(h, w, b, y)
    loss.backward()
    return loss.detach(), [t.grad.clone() for t in params]


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: f"{p.chunk}-{p.logits}-{p.grad_h}-{p.plain_rows}")
@pytest.mark.parametrize("bias", [False, True])
def test_every_plan_equals_plain_autograd_to_1e6(plan, bias):
    if "onednn" in (plan.logits, plan.grad_h) and "onednn" not in libraries(torch.device("cpu")):
        pytest.skip("this torch has no oneDNN")
    problem = head_problem(bias)
    plain, plain_grads = loss_and_grads(lambda h, w, b, y: F.cross_entropy(F.linear(h, w, b), y), *problem)
    fused, fused_grads = loss_and_grads(lambda h, w, b, y: linear_cross_entropy(h, w, b, y, plan), *problem)
    assert abs(fused.item() - plain.item()) <= 1e-6
    for got, want in zip(fused_grads, plain_grads):
        assert (got - want).abs().max().item() <= 1e-6
    with torch.no_grad():  # evaluation: the loss alone, no gradients kept
        assert abs(linear_cross_entropy(*problem[:3], problem[3], plan).item() - plain.item()) <= 1e-6


def test_under_autocast_the_loss_matches_the_plain_head_under_autocast():
    h, w, b, y = head_problem(bias=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain, plain_grads = loss_and_grads(lambda h, w, b, y: F.cross_entropy(F.linear(h, w).float(), y), h, w, b, y)
        fused, fused_grads = loss_and_grads(lambda h, w, b, y: linear_cross_entropy(h, w, b, y, HeadPlan(64)),
                                            h, w, b, y)
    assert fused.item() == pytest.approx(plain.item(), abs=1e-3)
    for got, want in zip(fused_grads, plain_grads):
        assert torch.allclose(got, want, atol=2e-3)


def test_chunks_keep_the_block_within_its_memory_bound():
    assert max(chunk_candidates(50257)) * 50257 * 4 <= 48 * 2 ** 20
    assert chunk_candidates(10 ** 8) == [1]  # a vocabulary too large for any block still gets a chunk


def plan_in_child(cache: Path) -> dict:
    code = ("import json, torch; from picollm.head_plan import plan_record; "
            "print(json.dumps(plan_record(300, 24, torch.device('cpu'))))")
    env = {**os.environ, "PICOLLM_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_plan_is_measured_once_per_machine_then_read_from_the_cache(tmp_path):
    first = plan_in_child(tmp_path)
    assert first["source"] == "measured" and first["cache"] == str(tmp_path / "head_plans.json")
    assert {"cpu_model", "cpu_flags", "cpu_caches", "torch", "threads", "device"} <= set(first["machine"])
    assert set(first["timings_ms"]["fused_by_chunk"]) == {str(c) for c in chunk_candidates(300)}
    assert first["plan"]["chunk"] in chunk_candidates(300)
    assert first["plan"]["plain_rows"] in (0, *map(int, first["timings_ms"]["fused_vs_plain"]))
    second = plan_in_child(tmp_path)
    assert second["source"] == "cache" and second["plan"] == first["plan"]

    # a cache written on another machine (another identity under the same key) is measured again
    cache = json.loads((tmp_path / "head_plans.json").read_text())
    for record in cache.values():
        record["machine"]["cpu_model"] = "another CPU"
    (tmp_path / "head_plans.json").write_text(json.dumps(cache))
    assert plan_in_child(tmp_path)["source"] == "measured"


def test_jobs_that_start_together_on_a_new_machine_measure_once_and_share_the_plan(tmp_path):
    """Parallel train jobs on a machine without a cache: one measures (holding the cache's lock), the others
    wait and read its plan, so that every job of the study trains with the same one."""
    with ThreadPoolExecutor(3) as pool:
        records = list(pool.map(lambda _: plan_in_child(tmp_path), range(3)))
    assert sorted(r["source"] for r in records) == ["cache", "cache", "measured"]
    assert all(r["plan"] == records[0]["plan"] for r in records)


def test_measuring_a_plan_leaves_the_seeded_random_state_alone(tmp_path):
    """A seeded run draws the same dropout masks whether this machine measured its head plan now or read it
    from the cache: the measurement draws from forked random states."""
    code = ("import json, torch; from picollm.head_plan import plan_record; torch.manual_seed(5); "
            "source = plan_record(300, 24, torch.device('cpu'))['source']; "
            "print(json.dumps([source, torch.rand(3).tolist(), torch.manual_seed(5) and torch.rand(3).tolist()]))")
    env = {**os.environ, "PICOLLM_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT / "src")}
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      timeout=120, check=True).stdout.strip().splitlines()[-1]) for _ in range(2)]
    assert [r[0] for r in runs] == ["measured", "cache"]
    assert all(r[1] == r[2] for r in runs)  # the draws after the lookup are the seed's own


def test_a_plan_is_kept_in_the_process_after_its_first_lookup():
    first = plan_record(100, 8, torch.device("cpu"))
    assert plan_record(100, 8, torch.device("cpu")) is first
