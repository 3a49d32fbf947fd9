"""The pytest plugin, run in a pytest session of its own (pytester): records, extra_info and machine info in the
pytest-benchmark JSON, the accuracy gate's exit status and table, the location options' skip reasons."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

BENCH_FILE = """
from samp.eval.records import Record

def score(value):
    return Record(time="2026-11-25T10:00:00Z", git_sha=None, samp_version="0.1.0", torch_version="2.13.0",
                  transformers_version="5.24.0", device="cpu", model="Qwen/Qwen2-Audio-7B", method="samp",
                  keep_ratio=0.6, threshold=0.85, flavor="samp", lowrank_plan=None, scorer="samp",
                  scorer_version="1", dataset="librispeech", subset="test_clean", metric="wer", wer=value,
                  accuracy=None, errors=None, ref_tokens=None, substitutions=None, deletions=None, insertions=None,
                  correct=None, total=None, n_items=100, n_failed=0, coverage=1.0, ci_low=value - 0.001,
                  ci_high=value + 0.001, tokens_in=1000, tokens_out=600, encode_s=None, compress_s=None,
                  prefill_s=None, decode_s=None, peak_memory_bytes=None)

def test_samp_wer(benchmark, samp_recorder):
    value = benchmark.pedantic(lambda: {VALUE}, rounds=1, iterations=1)
    samp_recorder.add(score(value), benchmark)
"""

BUDGET = ('rows = [{ model = "Qwen/Qwen2-Audio-7B", method = "samp", keep_ratio = 0.6, dataset = "librispeech", '
          'subset = "test_clean", metric = "wer", published = 2.72, tolerance = 0.5 }]\n')


def run(pytester, value, *args):
    pytester.makepyfile(test_bench=BENCH_FILE.replace("{VALUE}", repr(value)))
    pytester.makefile(".toml", budget=BUDGET)
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def test_score_within_the_budget_passes_and_is_recorded(pytester):
    records, bench_json = pytester.path / "out" / "records.jsonl", pytester.path / "bench.json"
    result = run(pytester, 0.0280, "--samp-compare", "budget.toml", "--samp-records", str(records),
                 "--benchmark-json", str(bench_json))
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*samp accuracy gate vs budget.toml*", "*1 unchanged*"])
    (row,) = [json.loads(line) for line in records.read_text().splitlines()]
    assert row["wer"] == 0.0280 and row["method"] == "samp"
    document = json.loads(bench_json.read_text())
    assert document["machine_info"]["samp"]["torch"] == torch.__version__
    assert "gpu" in document["machine_info"]["samp"]
    extra = document["benchmarks"][0]["extra_info"]
    assert extra["value"] == 0.0280 and extra["tokens_out"] == 600 and extra["samp_record"]["dataset"] == "librispeech"
    assert document["samp"]["gate"][0]["verdict"] == "unchanged"


def test_regression_against_the_budget_fails_the_run_and_shows_what_moved(pytester):
    result = run(pytester, 0.0400, "--samp-compare", "budget.toml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*Qwen/Qwen2-Audio-7B samp r0.6 librispeech/test_clean*wer*2.72*4.00*+1.28*REGRESSED*",
                                 "*FAILED: 1 result(s) regressed*"])
    assert "1 passed" in result.stdout.str()


def test_saved_run_as_the_reference(pytester):
    saved = pytester.path / "saved.json"
    assert run(pytester, 0.0280, "--benchmark-json", str(saved)).ret == 0
    assert run(pytester, 0.0300, "--samp-compare", str(saved)).ret == 0
    failed = run(pytester, 0.0300, "--samp-compare", str(saved), "--samp-tolerance", "0.05")
    assert failed.ret == pytest.ExitCode.TESTS_FAILED


def test_bad_reference_is_a_usage_error(pytester):
    result = run(pytester, 0.028, "--samp-compare", "missing.jsonl")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "reference not found" in result.stderr.str()


def test_location_options_skip_with_the_path_they_tried(pytester):
    model = pytester.path / "models" / "Qwen2-Audio-7B"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    pytester.makepyfile(test_paths="""
        def test_found(samp_paths):
            assert samp_paths.checkpoint("Qwen/Qwen2-Audio-7B").name == "Qwen2-Audio-7B"

        def test_absent_checkpoint(samp_paths):
            samp_paths.checkpoint("moonshotai/Kimi-Audio-7B-Instruct")

        def test_absent_data(samp_paths):
            samp_paths.data("librispeech")
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", "--samp-model-dir", "models",
                                "--samp-data-root", "nowhere")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*checkpoint moonshotai/Kimi-Audio-7B-Instruct not found: no config.json under*",
                                 "*dataset librispeech not available: --samp-data-root nowhere is not a folder*",
                                 "*1 passed, 2 skipped*"])
    bare = pytester.runpytest("-p", "no:cacheprovider", "-rs", "-k", "found")
    bare.stdout.fnmatch_lines(["*checkpoint Qwen/Qwen2-Audio-7B not available: pass --samp-model-dir DIR*"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA skip")
def test_gpu_marked_tests_skip_with_a_reason_without_cuda(pytester):
    pytester.makepyfile(test_gpu="""
        import pytest

        @pytest.mark.gpu
        def test_needs_cuda():
            raise AssertionError("must not run")
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*needs CUDA: torch.cuda.is_available() is False*", "*1 skipped*"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour of the GPU suites")
def test_gpu_benchmark_suites_all_skip_with_reasons_and_exit_zero():
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "benchmarks").glob("bench_gpu_*.py"))
    assert files, "no benchmarks/bench_gpu_*.py"
    completed = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "--benchmark-only", "-q", "-rs",
                                "-p", "no:cacheprovider", *files], cwd=ROOT, capture_output=True, text=True,
                               timeout=300)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    summary = output.strip().splitlines()[-1]
    assert " skipped" in summary and "passed" not in summary and "failed" not in summary, summary
    assert "SKIPPED" in output and "needs CUDA" in output


@pytest.mark.filterwarnings("ignore:Benchmark machine_info is different")
def test_timings_are_not_compared_across_gpus(pytester):
    storage = pytester.path / "storage"
    assert run(pytester, 0.028, f"--benchmark-storage=file://{storage}", "--benchmark-save=first").ret == 0
    (saved,) = storage.rglob("0001_first.json")
    document = json.loads(saved.read_text())
    assert document["machine_info"]["samp"]["torch"] == torch.__version__
    same = run(pytester, 0.028, f"--benchmark-storage=file://{storage}", "--benchmark-compare=0001")
    assert same.ret == 0
    document["machine_info"]["samp"]["gpu"] = "Some Other GPU"
    saved.write_text(json.dumps(document))
    other = run(pytester, 0.028, f"--benchmark-storage=file://{storage}", "--benchmark-compare=0001")
    assert other.ret == pytest.ExitCode.USAGE_ERROR
    assert "the saved run timed Some Other GPU" in other.stderr.str()


def test_slow_tests_run_only_when_a_marker_expression_names_them(pytester):
    pytester.makepyfile(test_marked="""
import pytest

@pytest.mark.slow
def test_full_sweep():
    pass

def test_ci_share():
    pass
""")
    default = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    default.assert_outcomes(passed=1, skipped=1)
    default.stdout.fnmatch_lines(["*slow: beyond the CI budget; run with -m slow*"])
    pytester.runpytest("-p", "no:cacheprovider", "-m", "slow").assert_outcomes(passed=1, deselected=1)
