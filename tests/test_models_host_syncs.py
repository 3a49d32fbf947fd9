"""An adapter's compress stage (attention statistics, the method, the kept rows and their positions) reads back to
the host a fixed number of times per batch, never once per utterance: counted on the CPU under the methods'
device path, as a GPU would pay them."""
import pytest

from samp.bench.syncs import HostSyncCounter
from samp.methods.primitives import device_path
from samp.models import adapter_for
from samp.models.tiny import speechlike_waveform, tiny_qwen2_audio

# statistics: the lengths and the key extents; samp.compress: its one read; the adapter: kept counts, positions
ATTENTION_METHOD_BOUND = 5
BOUND = 3


@pytest.fixture(scope="module")
def adapter():
    return adapter_for(*tiny_qwen2_audio(chunk_seconds=4))


@pytest.mark.parametrize("method", ["samp", "visionzip", "uniform", "cdpruner"])
def test_compress_stage_reads_back_a_fixed_number_of_times_per_batch(adapter, method):
    totals = {}
    for size in (1, 4):
        tokens = adapter.encode([speechlike_waveform(0.8 + 0.5 * i, i) for i in range(size)], attention=True)
        with device_path(), HostSyncCounter() as counts:
            kept = adapter.compress(tokens, method=method, keep_ratio=0.5, threshold=0.85, flavor="samp")
        assert len(kept.rows) == size
        totals[size] = counts.total
    bound = ATTENTION_METHOD_BOUND if method in ("samp", "visionzip") else BOUND
    assert totals[1] == totals[4] <= bound, totals
