"""Budget files: every published number of the seed's Tables 1-2 is there exactly once, with a band; bad files are
refused with a message naming the file and row."""
from pathlib import Path

import pytest

import samp

from samp.bench.budgets import AccuracyBudget, ResultKey, default_budget_dir, load_budgets, lower_is_better

SEED = Path(__file__).resolve().parents[1].parent / "shared" / "seeds" / "samp-README.md"
MODEL_IDS = {"Qwen2-Audio": "Qwen/Qwen2-Audio-7B", "Kimi-Audio": "moonshotai/Kimi-Audio-7B-Instruct",
             "GLM-ASR-Nano": "zai-org/GLM-ASR-Nano-2512"}
METHOD_NAMES = {"VisionZip": "visionzip", "VisPruner": "vispruner", "CDPruner": "cdpruner", "A-ToMe": "atome-merge",
                "FastAdaSP": "fastadasp", "Samp": "samp"}


@pytest.fixture(scope="module")
def budgets():
    return load_budgets(default_budget_dir())


def test_budget_files_cover_both_tables(budgets):
    # Table 1: 3 models x (base + 6 methods) x 10 columns; Table 2: 2 models x 7 x 7.
    assert len(budgets) == 3 * 7 * 10 + 2 * 7 * 7
    assert budgets.models() == sorted(MODEL_IDS.values())
    ratios = {(b.key.model, b.key.method != "base", b.metric == "accuracy"): b.key.keep_ratio for b in budgets}
    assert ratios[("Qwen/Qwen2-Audio-7B", True, False)] == 0.6
    assert ratios[("moonshotai/Kimi-Audio-7B-Instruct", True, False)] == 0.6
    assert ratios[("zai-org/GLM-ASR-Nano-2512", True, False)] == 0.7
    assert ratios[("Qwen/Qwen2-Audio-7B", True, True)] == 0.5
    assert ratios[("Qwen/Qwen2-Audio-7B", False, True)] == 1.0
    assert {b.flavor for b in budgets} == {"qwen2_audio", "kimi_audio", "glm_asr"}
    assert all(b.tolerance > 0 for b in budgets)


def test_budget_rows_name_registered_datasets_subsets_and_flavours(budgets):
    from samp.eval.datasets import get_dataset

    for budget in budgets:
        spec = get_dataset(budget.key.dataset)
        assert budget.key.subset in spec.subsets, budget.key.label()
        assert (budget.metric == "accuracy") == (spec.metric == "accuracy"), budget.key.label()
        assert samp.keep_count(100, budget.key.keep_ratio, flavor=budget.flavor) > 0
    assert budgets.latency is not None and 0 < budgets.latency.prefill_slack < 1


def _seed_rows(text: str):
    """Every (model, method, column index, value) in the seed's two tables, read straight from the markdown."""
    rows = []
    for table in (text.split("**Table 1.")[1].split("**Table 2.")[0], text.split("**Table 2.")[1].split(">-")[0]):
        model = None
        for line in table.splitlines():
            cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
            if len(cells) < 8 or cells[0] in ("Method", "") or set(cells[0]) <= set("- "):
                continue
            if cells[0] in MODEL_IDS:
                model, method = MODEL_IDS[cells[0]], "base"
            else:
                method = METHOD_NAMES[cells[0]]
            rows.append((model, method, [float(c) for c in cells[1:-1]], "Table 1" if "LibriSpeech" in table else "Table 2"))
    return rows


@pytest.mark.skipif(not SEED.is_file(), reason=f"seed README not found at {SEED}")
def test_budgets_match_the_seed_tables_number_for_number(budgets):
    text = SEED.read_text(encoding="utf-8")
    seed = _seed_rows(text)
    assert len(seed) == 21 + 14
    for model, method, values, table in seed:
        mine = [b for b in budgets if b.key.model == model and b.key.method == method
                and (b.metric == "accuracy") == (table == "Table 2")]
        # Budget rows keep the column order of the seed table.
        assert [b.published for b in mine] == values, (model, method, table)


def test_band_is_published_plus_minus_tolerance_as_fractions():
    budget = AccuracyBudget(ResultKey("m", "samp", 0.6, "librispeech", "test_clean"), "wer", 2.72, 0.5)
    assert budget.band == pytest.approx((0.0222, 0.0322))
    assert budget.contains(0.0272) and budget.contains(0.0222) and not budget.contains(0.0330)
    assert lower_is_better("cer") and not lower_is_better("accuracy")
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        lower_is_better("bleu")


GOOD_ROW = 'model = "m", method = "samp", keep_ratio = 0.6, dataset = "d", metric = "wer", published = 2.0, tolerance = 0.5'


@pytest.mark.parametrize("rows, message", [
    ("", "non-empty 'rows'"),
    (f"{{ {GOOD_ROW.replace('0.6', '1.5')} }}", "keep_ratio must be in"),
    (f"{{ {GOOD_ROW.replace('wer', 'bleu')} }}", "unknown metric 'bleu'"),
    (f"{{ {GOOD_ROW.replace('2.0', '200.0').replace('wer', 'accuracy')} }}", "published is a percentage"),
    (f"{{ {GOOD_ROW.replace('2.0', '-1.0')} }}", "published is a percentage"),
    (f"{{ {GOOD_ROW.replace('0.5', '-1.0')} }}", "tolerance must be >= 0"),
    (f"{{ {GOOD_ROW}, colour = 1 }}", "unknown field"),
    (f"{{ {GOOD_ROW.replace('model = ', 'modle = ')} }}", "unknown field"),
    (f"{{ {GOOD_ROW} }}, {{ {GOOD_ROW} }}", "row 2: duplicate row"),
    (f"{{ {GOOD_ROW.replace('2.0', 'nan')} }}", "finite number"),
])
def test_bad_budget_rows_are_refused_naming_the_row(tmp_path, rows, message):
    path = tmp_path / "bad.toml"
    path.write_text(f"rows = [{rows}]\n")
    with pytest.raises(ValueError, match=message) as error:
        load_budgets(path)
    assert "bad.toml" in str(error.value)


def test_an_error_rate_above_100_percent_is_a_budget(tmp_path):
    # insertions count: a decoder that loops on a heavily compressed input scores above 100 % WER
    path = tmp_path / "loops.toml"
    path.write_text(f"rows = [{{ {GOOD_ROW.replace('2.0', '133.7')} }}]\n")
    (budget,) = load_budgets(path)
    assert budget.band == pytest.approx((1.332, 1.342))


def test_latency_table_is_validated(tmp_path):
    path = tmp_path / "latency.toml"
    path.write_text("[latency]\nprefill_slack = 1.5\n")
    with pytest.raises(ValueError, match="prefill_slack must be in"):
        load_budgets(path)
    path.write_text("[latency]\nprefill_slack = 0.1\nprefill_ratio = 2\n")
    with pytest.raises(ValueError, match="exactly 'prefill_slack'"):
        load_budgets(path)
    path.write_text("[latency]\nprefill_slack = 0.1\n")
    (tmp_path / "again.toml").write_text("[latency]\nprefill_slack = 0.2\n")
    with pytest.raises(ValueError, match="a second \\[latency\\] table"):
        load_budgets(tmp_path)


def test_corrupt_missing_and_conflicting_files(tmp_path):
    (tmp_path / "broken.toml").write_text("rows = [ {")
    with pytest.raises(ValueError, match="broken.toml: not valid TOML"):
        load_budgets(tmp_path / "broken.toml")
    with pytest.raises(FileNotFoundError, match="budget file not found"):
        load_budgets(tmp_path / "absent.toml")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no budget files"):
        load_budgets(empty)
    both = tmp_path / "both"
    both.mkdir()
    (both / "a.toml").write_text(f"rows = [{{ {GOOD_ROW} }}]\n")
    (both / "b.toml").write_text(f"rows = [{{ {GOOD_ROW} }}]\n")
    with pytest.raises(ValueError, match="also budgeted in .*a.toml"):
        load_budgets(both)


def test_threshold_and_flavour_defaults_apply_per_row(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text(f'threshold = 0.85\nrows = [{{ {GOOD_ROW} }}, {{ {GOOD_ROW.replace("samp", "base")}, '
                    f'threshold = 1.0 }}]\n[flavors]\nm = "qwen2_audio"\n')
    table = load_budgets(path)
    assert [b.threshold for b in table] == [0.85, 1.0]
    assert table.get(ResultKey("m", "samp", 0.6, "d")).flavor == "qwen2_audio"
    assert table.get(ResultKey("m", "samp", 0.6, "d", "other")) is None
