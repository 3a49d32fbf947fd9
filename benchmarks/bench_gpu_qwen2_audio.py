"""GPU budgets for Qwen2-Audio-7B (Table 1 at keep 0.6, Table 2 at keep 0.5).

Accuracy: every budget row of benchmarks/budgets (the seed's published number ± tolerance) for this model, run with
the reference's keep-count flavour and evalkit scoring; a score outside its band fails. Latency: encode, compress,
prefill and decode per method × keep ratio, with prefill gated as a ratio to the uncompressed run of the session.

    pytest -m gpu --benchmark-only benchmarks/bench_gpu_qwen2_audio.py \
        --samp-model-dir /models --samp-data-root /data --samp-records runs/records.jsonl

Skips with the reason when CUDA, the checkpoint (--samp-model-dir) or the dataset (--samp-data-root) is absent.
"""
import pytest

from samp.bench.gpu_suite import accuracy_params, latency_params, run_accuracy_budget, run_latency_budget

MODEL_ID = "Qwen/Qwen2-Audio-7B"
pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("budget", accuracy_params(MODEL_ID))
def test_accuracy_budget(budget, benchmark, samp_paths, samp_model_cache, samp_recorder, tmp_path):
    benchmark.group = f"{MODEL_ID} accuracy"
    run_accuracy_budget(budget, paths=samp_paths, cache=samp_model_cache, benchmark=benchmark,
                        recorder=samp_recorder, work_dir=tmp_path)


@pytest.mark.parametrize("method, keep_ratio", latency_params(MODEL_ID))
def test_latency(method, keep_ratio, benchmark, samp_paths, samp_model_cache, samp_latency_book, samp_budgets):
    benchmark.group = f"{MODEL_ID} latency"
    run_latency_budget(MODEL_ID, method, keep_ratio, paths=samp_paths, cache=samp_model_cache,
                       benchmark=benchmark, book=samp_latency_book, budgets=samp_budgets)
