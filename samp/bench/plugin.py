"""samp's pytest plugin (entry point ``pytest11: samp``): where models and data live, the accuracy gate, records and
machine info for pytest-benchmark.

Options
  --samp-model-dir DIR   checkpoints, one folder per Hugging Face id (``DIR/Qwen/Qwen2-Audio-7B``) or per its last
                         part (``DIR/Qwen2-Audio-7B``); benchmarks needing an absent one skip with the path they tried
  --samp-data-root DIR   dataset manifests for ``samp.eval``; absent datasets skip likewise
  --samp-records PATH    append every score a benchmark reports to this records JSONL (a history when kept)
  --samp-compare REF     fail the run when a score regressed against REF (budget TOML/dir, records JSONL or a
                         pytest-benchmark JSON) beyond the tolerance and outside the confidence interval; prints
                         what moved
  --samp-tolerance PTS   tolerance against a saved run, in percentage points (budgets carry their own)

Benchmarks report a score through the ``samp_recorder`` fixture: ``samp_recorder.add(record, benchmark)``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from samp.bench.budgets import BudgetTable, default_budget_dir, load_budgets
from samp.bench.gate import compare, format_movements, load_reference, regressions
from samp.bench.machine import device_class, machine_info as describe_machine
from samp.bench.observations import Observation, observation_from_record
from samp.eval.records import Record, append_record

_RECORDER_KEY = pytest.StashKey["Recorder"]()
_REFERENCE_KEY = pytest.StashKey[object]()
_MOVEMENTS_KEY = pytest.StashKey[list]()
_CUDA_SKIP_REASON = "needs CUDA: torch.cuda.is_available() is False on this machine"


def pytest_addoption(parser):
    group = parser.getgroup("samp", "samp benchmarks: model/data locations, records and the accuracy gate")
    group.addoption("--samp-model-dir", type=Path, default=None, metavar="DIR",
                    help="folder of checkpoints (DIR/<org>/<name> or DIR/<name>); never downloaded")
    group.addoption("--samp-data-root", type=Path, default=None, metavar="DIR",
                    help="folder of dataset manifests for samp.eval; never downloaded")
    group.addoption("--samp-records", type=Path, default=None, metavar="PATH",
                    help="append the scores benchmarks report to this records JSONL")
    group.addoption("--samp-compare", type=Path, default=None, metavar="REF",
                    help="accuracy gate: budget TOML file/dir, records JSONL or pytest-benchmark JSON to compare with")
    group.addoption("--samp-tolerance", type=float, default=0.5, metavar="PTS",
                    help="tolerance against a saved run, in percentage points (default 0.5)")
    group.addoption("--samp-budgets", type=Path, default=None, metavar="PATH",
                    help="budget TOML file or folder (default: benchmarks/budgets of the checkout)")


class Recorder:
    """Collects this session's scores, appends them to ``--samp-records`` and copies them into ``extra_info``."""

    def __init__(self, records_path: Path | None):
        self.records_path = records_path
        self.observations: list[Observation] = []

    def add(self, record: Record, benchmark=None) -> Observation:
        observation = observation_from_record(record)
        self.observations.append(observation)
        if self.records_path is not None:
            append_record(self.records_path, record)
        if benchmark is not None:
            benchmark.extra_info.update({
                "metric": observation.metric, "value": observation.value, "ci_low": observation.ci_low,
                "ci_high": observation.ci_high, "coverage": observation.coverage,
                "tokens_in": observation.tokens_in, "tokens_out": observation.tokens_out,
                "samp_record": record.to_dict(),
            })
        return observation


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CUDA (skipped with a reason when CUDA is absent)")
    config.addinivalue_line("markers", "slow: beyond the CI budget (full sweeps, extra checkpoints): skipped unless a -m "
                                       "expression names it, e.g. -m slow")
    config.stash[_RECORDER_KEY] = Recorder(config.getoption("--samp-records"))
    reference = config.getoption("--samp-compare")
    if reference is not None:
        try:
            config.stash[_REFERENCE_KEY] = load_reference(reference)
        except (OSError, ValueError) as error:
            raise pytest.UsageError(str(error)) from error


def pytest_collection_modifyitems(config, items):
    if "slow" not in (config.option.markexpr or ""):
        skip_slow = pytest.mark.skip(reason="slow: beyond the CI budget; run with -m slow")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip_slow)
    if torch.cuda.is_available():
        return
    for item in items:
        if "gpu" in item.keywords and not any(mark.name == "skip" for mark in item.iter_markers()):
            item.add_marker(pytest.mark.skip(reason=_CUDA_SKIP_REASON))


class BenchPaths:
    """Locations from the command line; each lookup skips the calling test with the path it tried."""

    def __init__(self, model_dir: Path | None, data_root: Path | None):
        self.model_dir = model_dir
        self.data_root = data_root

    def checkpoint(self, model_id: str) -> Path:
        if self.model_dir is None:
            pytest.skip(f"checkpoint {model_id} not available: pass --samp-model-dir DIR")
        for candidate in (self.model_dir / model_id, self.model_dir / model_id.split("/")[-1]):
            if (candidate / "config.json").is_file():
                return candidate
        pytest.skip(f"checkpoint {model_id} not found: no config.json under {self.model_dir / model_id} "
                    f"or {self.model_dir / model_id.split('/')[-1]}")

    def data(self, dataset: str) -> Path:
        if self.data_root is None:
            pytest.skip(f"dataset {dataset} not available: pass --samp-data-root DIR")
        if not self.data_root.is_dir():
            pytest.skip(f"dataset {dataset} not available: --samp-data-root {self.data_root} is not a folder")
        return self.data_root


@pytest.fixture(scope="session")
def samp_paths(pytestconfig) -> BenchPaths:
    return BenchPaths(pytestconfig.getoption("--samp-model-dir"), pytestconfig.getoption("--samp-data-root"))


@pytest.fixture(scope="session")
def samp_budgets(pytestconfig) -> BudgetTable:
    return load_budgets(pytestconfig.getoption("--samp-budgets") or default_budget_dir())


@pytest.fixture(scope="session")
def samp_recorder(pytestconfig) -> Recorder:
    return pytestconfig.stash[_RECORDER_KEY]


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["samp"] = describe_machine()


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_compare_machine_info(config, benchmarksession, machine_info, compared_benchmark):
    """Refuse to compare timings across GPU models: pytest-benchmark's machine id omits the GPU and only warns."""
    now = (machine_info.get("samp") or {})
    saved = (compared_benchmark.get("machine_info", {}).get("samp") or {})
    if now and saved and device_class(now) != device_class(saved):
        raise pytest.UsageError(
            f"--benchmark-compare: the saved run timed {device_class(saved)}, this run {device_class(now)}; "
            f"timings are only comparable on the same device (compare accuracy with --samp-compare instead)")


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config, benchmarks, output_json):
    movements = config.stash.get(_MOVEMENTS_KEY, None)
    output_json["samp"] = {
        "records": [dataclasses.asdict(o) for o in config.stash[_RECORDER_KEY].observations],
        "gate": None if movements is None else [
            {"result": m.key.label(), "metric": m.metric, "reference": m.reference, "current": m.current,
             "tolerance": m.tolerance, "verdict": m.verdict} for m in movements],
    }


# A wrapper, outermost: pytest-benchmark writes its JSON in its own sessionfinish wrapper and the gate's verdicts
# belong in it.
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    reference = config.stash.get(_REFERENCE_KEY, None)
    if reference is not None:
        movements = compare(config.stash[_RECORDER_KEY].observations, reference,
                            config.getoption("--samp-tolerance") / 100.0)
        config.stash[_MOVEMENTS_KEY] = movements
        if regressions(movements) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    yield


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    movements = config.stash.get(_MOVEMENTS_KEY, None)
    if movements is None:
        return
    terminalreporter.section(f"samp accuracy gate vs {config.getoption('--samp-compare')}")
    if not config.stash[_RECORDER_KEY].observations:
        terminalreporter.write_line("no benchmark reported a score in this run; nothing to compare")
        return
    terminalreporter.write_line(format_movements(movements))
    failed = regressions(movements)
    if failed:
        terminalreporter.write_line(f"FAILED: {len(failed)} result(s) regressed", red=True, bold=True)


@pytest.fixture(scope="session")
def samp_model_cache():
    from samp.bench.gpu_suite import ModelCache

    return ModelCache()


@pytest.fixture(scope="session")
def samp_latency_book():
    from samp.bench.gpu_suite import LatencyBook

    return LatencyBook()
