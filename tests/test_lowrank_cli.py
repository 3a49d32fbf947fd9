"""``samp lowrank calibrate|plan|apply`` over a tiny Qwen2-Audio checkpoint directory and a manifest."""
from __future__ import annotations

import json
import re

import pytest
import torch

import samp.lowrank as lowrank
from samp.cli import main
from samp.lowrank import CalibrationStats, LowRankLinear, Plan


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    soundfile = pytest.importorskip("soundfile")
    tiny = pytest.importorskip("samp.models.tiny")
    root = tmp_path_factory.mktemp("lowrank_cli")
    model, processor = tiny.tiny_qwen2_audio(chunk_seconds=4)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    (root / "wav").mkdir()
    rows = []
    for index in range(3):
        # 22.05 kHz on disk: the CLI resamples to the feature extractor's 16 kHz
        soundfile.write(root / "wav" / f"{index}.wav", tiny.speechlike_waveform(1.5 + index * 0.5, seed=index, sampling_rate=22050), 22050)
        rows.append({"index": index, "audio_path": f"wav/{index}.wav", "question": "", "answer": "x", "subset": "calib"})
    (root / "calib.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def test_calibrate_plan_apply_from_the_command_line(checkpoint, tmp_path, capsys):
    stats_path, plan_path, out = tmp_path / "stats.safetensors", tmp_path / "plan.json", tmp_path / "encoder"
    assert main(["lowrank", "calibrate", "--model", str(checkpoint / "model"), "--manifest",
                 str(checkpoint / "calib.jsonl"), "--out", str(stats_path)]) == 0
    stats = CalibrationStats.load(stats_path)
    assert len(stats.layers) == 12 and stats.encoder_class.endswith("Qwen2AudioEncoder")
    # only real frames count: 1.5, 2.0 and 2.5 s give 150, 200 and 250 mel frames, halved by the stride-2 conv
    assert all(layer.count == 75 + 100 + 125 for layer in stats.layers)

    assert main(["lowrank", "plan", "--stats", str(stats_path), "--rank-threshold", "0.9:0.95", "--out", str(plan_path)]) == 0
    printed = capsys.readouterr().out
    assert "low-rank plan, rank threshold 0.9:0.95" in printed and "total:" in printed
    compression = Plan.from_json(plan_path.read_text(), stats=stats)
    assert compression == lowrank.plan(stats, "0.9:0.95")

    assert main(["lowrank", "apply", "--model", str(checkpoint / "model"), "--stats", str(stats_path), "--plan",
                 str(plan_path), "--out", str(out), "--manifest", str(checkpoint / "calib.jsonl"), "--limit", "1"]) == 0
    printed = capsys.readouterr().out
    assert "encoder output error on 1 utterances: relative" in printed
    encoder = lowrank.load(out)
    planned = {layer.name for layer in compression.layers if layer.rank is not None}
    assert planned and {n for n, m in encoder.named_modules() if isinstance(m, LowRankLinear)} == planned
    assert torch.isfinite(encoder(torch.randn(1, 128, 400)).last_hidden_state).all()


def test_an_edited_plan_is_applied_as_edited(checkpoint, tmp_path):
    stats_path, plan_path, out = tmp_path / "stats.safetensors", tmp_path / "plan.json", tmp_path / "encoder"
    main(["lowrank", "calibrate", "--model", str(checkpoint / "model"), "--manifest", str(checkpoint / "calib.jsonl"),
          "--out", str(stats_path), "--limit", "2"])
    main(["lowrank", "plan", "--stats", str(stats_path), "--rank-threshold", "0.99", "--out", str(plan_path)])
    data = json.loads(plan_path.read_text())
    data["layers"][4]["rank"] = 16  # hand-edit: layers.0.fc1 to rank 16
    plan_path.write_text(json.dumps(data))
    main(["lowrank", "apply", "--model", str(checkpoint / "model"), "--stats", str(stats_path), "--plan",
          str(plan_path), "--out", str(out)])
    encoder = lowrank.load(out)
    assert encoder.get_submodule(data["layers"][4]["name"]).rank == 16


def test_command_line_errors(checkpoint, tmp_path, capsys):
    # bad input: exit 2 and one line naming it (tests/test_cli_validation.py has the rest)
    assert main(["lowrank", "calibrate", "--model", str(checkpoint / "model"), "--manifest",
                 str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "s.safetensors")]) == 2
    assert re.search("manifest .* does not exist", capsys.readouterr().err)
    assert main(["lowrank", "calibrate", "--model", str(tmp_path), "--manifest", str(checkpoint / "calib.jsonl"),
                 "--out", str(tmp_path / "s.safetensors")]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main(["lowrank", "plan", "--stats", str(tmp_path / "none.safetensors"), "--out",
                 str(tmp_path / "p.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lowrank", "plan"])
