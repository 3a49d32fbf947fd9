"""Re-time a few tiny.en plans on a quiet machine: encoder time on one 30-s window against the dense encoder,
10 interleaved rounds, fastest kept, one thread; statistics saved by scripts/lowrank_whisper_sweep.py
(runs/lowrank-whisper/tiny.en-b). Writes docs/lowrank-whisper/tiny.en-retimed.json.

    .venv/bin/python scripts/lowrank_whisper_retime.py
"""
import copy, json, sys, torch
sys.path.insert(0, ".")
torch.set_num_threads(1)
import samp, samp.lowrank as lowrank
from samp.bench.timers import fastest_seconds
from samp.realspeech import whisper_checkpoint
model, processor = samp.models.load(str(whisper_checkpoint("tiny.en")))
dense = lowrank.audio_encoder(model).eval()
S = "runs/lowrank-whisper/tiny.en-b/stats-%s.safetensors"
stats = {k: lowrank.CalibrationStats.load(S % k) for k in ("asterisk-whole", "asterisk-speech")}
stats["asterisk-balanced"] = lowrank.balance_frames(stats["asterisk-whole"], stats["asterisk-speech"])
window = torch.randn(1, 80, 3000)
out = []
for cal, theta, saving in [("asterisk-whole", "0.9:0.95", 0), ("asterisk-balanced", "0.99", 0), ("asterisk-balanced", "0.995", 0),
                           ("asterisk-balanced", "0.999", 0), ("asterisk-balanced", "0.9995", 0), ("asterisk-balanced", "0.999", 0.3),
                           ("asterisk-balanced", "1.0", 0)]:
    p = lowrank.plan(stats[cal], theta, min_flop_saving=saving)
    enc = copy.deepcopy(dense); lowrank.apply(enc, p)
    with torch.no_grad():
        s = fastest_seconds({"run": lambda: enc(window), "base": lambda: dense(window)}, 10)
    row = dict(calibration=cal, theta=theta, min_flop_saving=saving, flops=p.flops_after / p.flops_before, time=s["run"] / s["base"], dense_s=s["base"])
    out.append(row); print(row, flush=True)
json.dump({"rounds": 10, "threads": 1, "rows": out}, open("docs/lowrank-whisper/tiny.en-retimed.json", "w"), indent=1)
