"""The methods' device path (what CUDA inputs take), forced on CPU tensors: the same picks and assignments as the
CPU path, and at most one host synchronisation per `samp.compress` call, counted by samp.bench.syncs."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import samp
from methods_inputs import METHODS, build_inputs, keep_ratios, thresholds
from samp.bench.syncs import HostSyncCounter
from samp.methods.primitives import device_path

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# At most this many host synchronisations per compress call on the device path: the one read of the lengths and
# validity flags before any method work.
SYNC_BOUND = 1
# Methods that cannot meet the bound yet, with the reason. Empty: every registered clean method meets it.
OVER_BOUND: dict[str, str] = {}


@st.composite
def continuous_inputs(draw, max_n: int = 20):
    """methods_inputs.inputs() without the cases round-off decides: there the two paths may legitimately differ,
    as their sums run in another order. Left out: one or two channels (every cosine is ±1 or exactly on a
    threshold of ±1 or 0, so "mean cosine ≥ threshold" and equal join scores are decided by the last bit) and the
    integer-valued ``ties`` structure (cosines like 0.5 that sit exactly on a threshold)."""
    batch = draw(st.integers(1, 3))
    n = draw(st.integers(1, max_n))
    return build_inputs(
        seed=draw(st.integers(0, 2**31 - 1)), batch=batch, n=n, channels=draw(st.integers(3, 6)),
        frames_per_token=draw(st.sampled_from([1, 2, 4])), lengths=[draw(st.integers(1, n)) for _ in range(batch)],
        structure=draw(st.sampled_from(["runs", "zeros", "noise"])),
    )


def run(method, data, keep_ratio, threshold=0.85, lengths=None):
    return samp.compress(data.features, data.lengths if lengths is None else lengths, method=method,
                         keep_ratio=1.0 if method == "base" else keep_ratio, threshold=threshold, **data.kwargs())


def check_same(cpu, device):
    assert torch.equal(device.assignment, cpu.assignment)
    assert torch.equal(device.lengths, cpu.lengths)
    torch.testing.assert_close(device.weights, cpu.weights, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(device.features, cpu.features, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(data=continuous_inputs(), keep_ratio=keep_ratios, threshold=thresholds)
def test_device_path_matches_cpu_path(method, data, keep_ratio, threshold):
    cpu = run(method, data, keep_ratio, threshold)
    with device_path():
        device = run(method, data, keep_ratio, threshold)
    check_same(cpu, device)


@pytest.mark.parametrize("method", ["samp", "cdpruner", "divprune", "fastadasp-attention-dpp",
                                    "atome-merge-attention-dpp"])
@pytest.mark.parametrize("structure", ["runs", "zeros", "noise"])
def test_device_path_matches_at_speech_sizes(method, structure):
    """Hundreds of tokens and wide rows: long groups (prefix-sum scores) and hundreds of greedy DPP steps."""
    data = build_inputs(seed=11, batch=2, n=300, channels=64, lengths=[300, 213], structure=structure)
    cpu = run(method, data, 0.6)
    with device_path():
        device = run(method, data, 0.6)
    check_same(cpu, device)


def test_sync_bound_list_is_current():
    assert set(OVER_BOUND) <= set(METHODS), "OVER_BOUND names a method that is not registered"


@pytest.mark.parametrize("as_list", [False, True], ids=["lengths-tensor", "lengths-list"])
@pytest.mark.parametrize("method", METHODS)
def test_at_most_one_host_sync_per_compress(method, as_list):
    data = build_inputs(seed=5, batch=3, n=48, channels=16, lengths=[48, 31, 7])
    lengths = data.lengths.tolist() if as_list else data.lengths
    with device_path(), HostSyncCounter() as counts:
        run(method, data, 0.5, lengths=lengths)
    if method in OVER_BOUND:
        pytest.xfail(OVER_BOUND[method])
    assert counts.total <= SYNC_BOUND, f"{method}: {dict(counts.calls)}"


def test_counter_sees_what_a_gpu_would_wait_for():
    """The counter is not vacuous: the CPU path's reads (its arrays handed to compiled loops) are counted."""
    data = build_inputs(seed=5, batch=2, n=24, channels=8, lengths=[24, 9])
    with HostSyncCounter() as counts:
        run("samp", data, 0.5)
    assert counts.calls["Tensor.numpy"] >= 2 and counts.total > SYNC_BOUND
    x = torch.randn(6)
    with HostSyncCounter() as counts:
        x[x > 0]
        torch.nonzero(x > 0)
        int(x.argmax())
        x.tolist()
        x[x.argmax()]  # a 0-d tensor index is read as an int
        torch.nonzero_static(x > 0, size=2)  # a known size: no synchronisation
    assert counts.calls == {"aten.index (boolean mask)": 1, "aten.nonzero": 1, "Tensor.__int__": 1,
                            "Tensor.tolist": 1, "aten._local_scalar_dense": 1}


def test_device_path_errors_like_the_cpu_path():
    data = build_inputs(seed=2, batch=2, n=10, channels=4, lengths=[10, 6])
    bad = data.features.clone()
    bad[1, 3, 0] = float("nan")
    bad[1, 8, 0] = float("nan")  # padding: never checked
    with device_path():
        with pytest.raises(ValueError, match=r"NaN or inf in a valid token \(utterance 1, token 3\)"):
            samp.compress(bad, data.lengths, method="uniform", keep_ratio=0.5)
        with pytest.raises(ValueError, match=r"lengths must be in 1\.\.N=10"):
            samp.compress(data.features, torch.tensor([11, 3]), method="uniform", keep_ratio=0.5)
        with pytest.raises(ValueError, match=r"lengths must be in 1\.\.N=10"):
            samp.compress(data.features, [0, 3], method="uniform", keep_ratio=0.5)
        attention = data.attention.clone()
        attention[0, 0, 0, 0] = float("inf")
        with pytest.raises(ValueError, match="attention contains NaN or inf"):
            samp.compress(data.features, data.lengths, method="samp", keep_ratio=0.5, attention=attention,
                          frames_per_token=data.frames_per_token)


@pytest.mark.parametrize("seed", range(4))
def test_torch_greedy_loop_picks_what_the_compiled_loop_picks(seed):
    """The greedy DPP loop itself, on kernels of utterances with different sizes and counts (spanned candidates
    included: duplicated rows), torch against the CPU path's compiled loop."""
    from samp.methods.primitives import dpp_kernel, dpp_kernels_batched, greedy_dpp_items, greedy_picks_device

    g = torch.Generator().manual_seed(seed)
    sizes, counts = [40, 23, 31], [30, 23, 5]
    rows = torch.randn(3, 40, 12, generator=g)
    rows[0, 10:14] = rows[0, 3]  # collinear candidates: spanned once one of them is picked
    relevance = torch.rand(3, 40, generator=g)
    valid = torch.arange(40)[None, :] < torch.tensor(sizes)[:, None]
    expected = greedy_dpp_items([dpp_kernel(rows[b, :s], relevance[b, :s]) for b, s in enumerate(sizes)], counts)
    kernels, diags = dpp_kernels_batched(rows, valid, relevance)
    picks = greedy_picks_device(kernels, diags, valid, max(counts))
    for b, count in enumerate(counts):
        assert picks[b, :count].tolist() == expected[b].tolist()


def test_captured_greedy_refuses_cpu_tensors():
    from samp.methods.primitives import greedy_picks_captured

    with pytest.raises(ValueError, match="needs CUDA tensors"):
        greedy_picks_captured(torch.zeros(1, 2, 2), torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), 1)


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_the_cpu_path(method):
    """On a GPU: CUDA inputs take the device path and pick what the CPU path picks (continuous inputs)."""
    data = build_inputs(seed=8, batch=3, n=120, channels=32, lengths=[120, 77, 31], structure="runs")
    cpu = run(method, data, 0.6)
    cuda = samp.compress(data.features.cuda(), data.lengths.cuda(), method=method,
                         keep_ratio=1.0 if method == "base" else 0.6, threshold=0.85,
                         attention=data.attention.cuda(), keys=data.keys.cuda(),
                         frames_per_token=data.frames_per_token)
    assert torch.equal(cuda.assignment.cpu(), cpu.assignment)
    torch.testing.assert_close(cuda.features.cpu(), cpu.features, atol=1e-4, rtol=1e-4)
