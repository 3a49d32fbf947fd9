"""The static dashboard: built from a records history through ``samp dashboard``, self-contained (no script, no
network), with the Pareto plots, the published points, the degradation heat map, the history with regressions and
the token-assignment picture."""
import json
import re

import pytest
import torch

import samp
import samp.cli
from samp.bench.budgets import default_budget_dir, load_budgets
from samp.bench.dashboard import assignment_row, read_assignments, render_dashboard
from samp.bench.observations import observation_from_record
from samp.eval.records import Record, append_record

MODEL = "Qwen/Qwen2-Audio-7B"
RUNS = (("1111111aaaa", "2026-11-20T10:00:00Z"), ("2222222bbbb", "2026-11-21T10:00:00Z"),
        ("3333333cccc", "2026-11-22T10:00:00Z"))


def make_record(model, method, keep_ratio, dataset, subset, metric, value, sha, time, prefill_s):
    return Record(time=time, git_sha=sha, samp_version="0.1.0", torch_version="2.13.0", transformers_version="5.24.0",
                  device="NVIDIA H100", model=model, method=method, keep_ratio=keep_ratio, threshold=0.85,
                  flavor="qwen2_audio", lowrank_plan=None, scorer="evalkit", scorer_version="1", dataset=dataset,
                  subset=subset, metric=metric, wer=value if metric == "wer" else None,
                  accuracy=value if metric == "accuracy" else None, errors=None, ref_tokens=None, substitutions=None,
                  deletions=None, insertions=None, correct=None, total=None, n_items=2000, n_failed=0, coverage=1.0,
                  ci_low=value - 0.002, ci_high=value + 0.002, tokens_in=750 * 2000,
                  tokens_out=round(750 * keep_ratio) * 2000, encode_s=10.0, compress_s=0.5, prefill_s=prefill_s,
                  decode_s=100.0, peak_memory_bytes=None)


def history_records(models=(MODEL,), regress=("vispruner", "LibriSpeech")):
    """Three runs that reproduce the published numbers (small seeded noise); in the last run one method regresses
    by two points on one dataset. Extra keep ratios give the Pareto lines more than one point."""
    generator = torch.Generator().manual_seed(0)
    records = []
    for run, (sha, time) in enumerate(RUNS):
        for budget in load_budgets(default_budget_dir()):
            key = budget.key
            if key.model not in models:
                continue
            ratios = (key.keep_ratio,) if key.method == "base" else (key.keep_ratio, min(1.0, key.keep_ratio + 0.2))
            for ratio in ratios:
                noise = float(torch.rand((), generator=generator) - 0.5) * 0.002
                value = budget.published / 100 * (1 if ratio == key.keep_ratio else 0.9) + noise
                if run == 2 and (key.method, key.dataset) == regress and ratio == key.keep_ratio:
                    value += 0.02
                metric = "accuracy" if budget.metric == "accuracy" else "wer"
                records.append(make_record(key.model, key.method, ratio, key.dataset, key.subset, metric, value,
                                           sha, time, prefill_s=20.0 * (0.2 + 0.8 * ratio)))
    return records


def speechlike_assignment(method="samp", keep_ratio=0.5, length=120):
    """A real ``Compressed.assignment`` of piecewise-constant features (runs of similar frames, as in speech)."""
    generator = torch.Generator().manual_seed(1)
    segments = torch.randint(1, 7, (length,), generator=generator)
    rows, position = [], 0
    for size in segments.tolist():
        rows.append(torch.randn(1, 32, generator=generator).expand(size, 32))
        position += size
        if position >= length:
            break
    features = (torch.cat(rows)[:length] + 0.05 * torch.randn(length, 32, generator=generator)).unsqueeze(0)
    lengths = torch.tensor([length])
    attention = torch.softmax(torch.randn(1, 2, 2 * length, 2 * length, generator=generator), dim=-1)
    stats = samp.attention_stats(attention, lengths, 2)
    out = samp.compress(features, lengths, method=method, keep_ratio=keep_ratio, attention=stats)
    return assignment_row(out.assignment, length=length)


@pytest.fixture(scope="module")
def history_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("history") / "history.jsonl"
    for record in history_records():
        append_record(path, record)
    return path


def test_cli_writes_a_self_contained_page(history_file, tmp_path, capsys):
    assignment = tmp_path / "assignment.json"
    assignment.write_text(json.dumps({"samp keep 0.5": speechlike_assignment()}))
    site = tmp_path / "site"
    assert samp.cli.main(["dashboard", str(history_file), "--out", str(site), "--assignment", str(assignment)]) == 0
    page = (site / "index.html").read_text()
    assert capsys.readouterr().out.strip() == str(site / "index.html")
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    kinds = re.findall(r'<svg class="plot" data-kind="([a-z-]+)"', page)
    assert kinds.count("pareto-kept") == 2 and kinds.count("pareto-prefill") == 2  # WER and accuracy
    assert kinds.count("heatmap") == 2 and kinds.count("assignment") == 1 and kinds.count("stage-times") == 2
    assert kinds.count("history") == 7 * 2 - 1 + 7 * 2 - 1  # base once, six methods at two ratios, per metric


def test_regressions_are_flagged_in_table_and_history(history_file):
    page = render_dashboard([observation_from_record(r) for r in history_records()])
    table = page.split('<table class="regressions">')[1].split("</table>")[0]
    flagged = re.findall(r"<td>(Qwen/Qwen2-Audio-7B [^<]+)</td>", table)
    assert sorted(flagged) == sorted(f"{MODEL} vispruner r0.6 LibriSpeech/{s}"
                                     for s in ("dev_clean", "dev_other", "test_clean", "test_other"))
    assert set(re.findall(r"<td>(\w+)</td></tr>", table)) == {"3333333c"}
    assert page.count('class="regression"') == 4


def test_published_points_and_heatmap_values():
    observations = [observation_from_record(r) for r in history_records()]
    budgets = load_budgets(default_budget_dir())
    page = render_dashboard(observations, budgets=budgets)
    assert "samp published" in page and "base published" in page
    # The heat map shows samp at keep 0.6 on test_clean minus base, in points, from the last run.
    latest = {(o.key.method, o.key.keep_ratio, o.key.subset): o.value for o in observations}
    expected = 100 * (latest[("samp", 0.6, "test_clean")] - latest[("base", 1.0, "test_clean")])
    assert f"samp r0.6 / LibriSpeech/test_clean: {expected:+.2f} pts" in page
    without = render_dashboard(observations)
    assert "published" not in without


def test_assignment_picture_counts_kept_merged_and_pruned():
    row = speechlike_assignment()
    page = render_dashboard([observation_from_record(history_records()[0])], assignments={"utt": row})
    kept = len({s for s in row if s >= 0})
    merged = sum(row.count(s) for s in set(row) if s >= 0 and row.count(s) > 1)
    assert kept == samp.keep_count(120, 0.5) and merged > 0
    assert f"120 tokens in → {kept} kept slots; {merged} tokens merged into shared slots (outlined), " \
           f"{row.count(-1)} pruned (grey)" in page
    assert page.count('class="token"') == 120


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        render_dashboard([])
    bad = tmp_path / "a.json"
    bad.write_text(json.dumps({"utt": [0, 1, -2]}))
    with pytest.raises(ValueError, match="'utt' must be a non-empty list of integers >= -1"):
        read_assignments(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected an object"):
        read_assignments(bad)
    with pytest.raises(FileNotFoundError, match="assignment file not found"):
        read_assignments(tmp_path / "none.json")
    with pytest.raises(ValueError, match="length 9 outside 1..3"):
        assignment_row([[0, 1, -1]], length=9)
    history = tmp_path / "h.jsonl"
    history.write_text("{broken\n")
    assert samp.cli.main(["dashboard", str(history), "--out", str(tmp_path / "site")]) == 2


def _observations(**changes):
    return [observation_from_record(r) for r in history_records(**changes)]


def test_every_method_has_its_own_colour_and_marker_and_base_is_a_reference_line():
    page = render_dashboard(_observations())
    chart = page.split('data-kind="pareto-kept"')[1].split("</svg>")[0]
    entries = re.findall(r'<g class="legend-entry" data-colour="([^"]+)" data-marker="([^"]+)">.*?'
                         r'class="legend">([^<]+)</text>', chart)
    methods = [label for _, _, label in entries]
    assert "base" not in methods and len(methods) >= 6
    assert len({hue for hue, _, _ in entries}) == len(entries), "a colour per method"
    assert len({shape for _, shape, _ in entries}) == min(len(entries), 7)
    assert 'class="reference"' in chart and "base (uncompressed)" in chart
    # the same method keeps its colour and marker in every chart
    prefill = page.split('data-kind="pareto-prefill"')[1].split("</svg>")[0]
    assert re.findall(r'data-colour="([^"]+)" data-marker="([^"]+)"', prefill) == [(h, m) for h, m, _ in entries]


def test_seventeen_methods_never_share_a_colour():
    from samp.bench.svg import colour, marker

    names = [spec.name for spec in samp.methods.available() if spec.name != "base"]
    assert len({colour(i) for i in range(len(names))}) == len(names)
    assert len({(colour(i), marker(i)) for i in range(133)}) == 133


def test_heat_map_is_in_points_with_a_legend_and_explains_blank_cells():
    observations = _observations()
    page = render_dashboard(observations)
    heat = page.split('data-kind="heatmap"')[1].split("</svg>")[0]
    assert "minus base, points (red = worse)" in heat
    assert 'class="heat-legend"' in heat and "pts (better)" in heat and "pts (worse)" in heat
    assert "blank: not measured, or no base run on that set" in heat
    assert "%" not in re.sub(r"<title>.*?</title>", "", heat), "cells show points, not relative percent"


def test_table_of_exact_numbers_and_coverage_flag():
    records = history_records()
    records[-1] = Record(**{**records[-1].to_dict(), "n_failed": 50, "coverage": 0.975})
    observations = [observation_from_record(r) for r in records]
    page = render_dashboard(observations)
    wer_table, accuracy_table = [part.split("</table>")[0] for part in page.split('<table class="numbers">')[1:]]
    table = accuracy_table  # the last record is an accuracy one
    header = re.findall(r"<th>([^<]+)</th>", table)
    assert header == ["method", "keep", "dataset", "metric", "score %", "95% CI", "coverage %", "items",
                      "tokens in → out", "kept %", "compress ms", "prefill ms"]
    last = observations[-1]
    assert f"<td>{last.key.method}</td><td>{last.key.keep_ratio:g}</td>" in table
    assert f"{100 * last.value:.2f}" in table and "⚠ 97.5" in table and "⚠" not in wer_table
    assert 'class="coverage-warning"' in page and "1 result(s) with coverage below 100 %" in page
    clean = render_dashboard(_observations())
    assert 'class="coverage-warning"' not in clean


def test_compression_time_is_drawn_beside_prefill_time():
    page = render_dashboard(_observations())
    chart = page.split('data-kind="stage-times"')[1].split("</svg>")[0]
    assert "compress (ms per utterance)" in chart and "prefill (ms per utterance)" in chart
    # make_record: compress_s 0.5 s and prefill_s 20·(0.2 + 0.8·keep) s over 2000 items
    assert "samp r0.6: compress 0.25 ms per utterance" in chart
    assert f"samp r0.6: prefill {1000 * 20.0 * (0.2 + 0.8 * 0.6) / 2000:.3g} ms per utterance" in chart


def test_history_only_where_there_is_history():
    one_run = [o for o in _observations() if o.git_sha == RUNS[0][0]]
    page = render_dashboard(one_run)
    assert 'data-kind="history"' not in page and 'class="note history-none"' in page
    assert 'data-kind="history"' in render_dashboard(_observations())
