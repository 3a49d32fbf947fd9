"""FLOP counts recorded beside benchmark times (samp.bench.flops): FastV's prefill formula and the selection costs."""
import pytest

from samp.bench.flops import dart_flops, divprune_flops, layer_flops, prefill_flops, similarity_flops


def test_layer_and_prefill_by_hand():
    # 4·L·d² + 2·L²·d + 2·L·d·m at L=10, d=4, m=8: 640 + 800 + 640
    assert layer_flops(10, 4, 8) == 2080
    assert layer_flops(5, 4, 8) == 840
    assert prefill_flops(3, 4, 8, 10) == 3 * 2080
    assert prefill_flops(3, 4, 8, 10, kept_tokens=5, prune_layer=2) == 2 * 2080 + 840
    assert prefill_flops(3, 4, 8, 10, kept_tokens=5, prune_layer=0) == 3 * 840  # pruned before the LLM


@pytest.mark.parametrize("layers, hidden, intermediate, prune_layer, published_saving", [
    (40, 5120, 13824, 2, 0.45),  # LLaVA-1.5-13B, K=2, R=50%: "−45% FLOPs" (FastV abstract)
    (32, 4096, 11008, 3, 0.43),  # LLaVA-1.5-7B, K=3, R=50%: "57% of FLOPs" (FastV README)
])
def test_fastv_published_savings(layers, hidden, intermediate, prune_layer, published_saving):
    tokens = 576 + 56  # the image's 576 tokens plus a system prompt and question of about 56
    pruned = prefill_flops(layers, hidden, intermediate, tokens, tokens - 288, prune_layer)
    saving = 1 - pruned / prefill_flops(layers, hidden, intermediate, tokens)
    assert saving == pytest.approx(published_saving, abs=0.02)


def test_selection_costs():
    assert similarity_flops(750, 4096) == 2 * 750 * 750 * 4096
    assert divprune_flops(750, 4096, 450) == similarity_flops(750, 4096) + 2 * 450 * 750
    assert dart_flops(750, 4096, 4) == 750 * 4096 * 9


def test_prune_layer_outside_the_model():
    with pytest.raises(ValueError, match="prune_layer must be in 0..3"):
        prefill_flops(3, 4, 8, 10, kept_tokens=5, prune_layer=4)
