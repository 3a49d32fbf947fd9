"""adapter_for and load: picking the adapter, loading a checkpoint directory, and the errors on bad input."""
import json

import pytest
import torch

from samp.models import adapter_for, load
from samp.models.qwen2_audio import Qwen2AudioAdapter
from samp.models.tiny import speechlike_waveform, tiny_qwen2_audio

PROMPT = "<|audio_bos|><|AUDIO|><|audio_eos|>Transcribe:"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, processor = tiny_qwen2_audio(chunk_seconds=4)
    root = tmp_path_factory.mktemp("q2a")
    model.save_pretrained(root)
    processor.save_pretrained(root / "processor")
    return root, model, processor


def test_load_round_trips_a_saved_checkpoint(saved):
    root, model, processor = saved
    loaded, loaded_processor = load(root)
    adapter = adapter_for(loaded, loaded_processor)
    assert isinstance(adapter, Qwen2AudioAdapter)
    wave = speechlike_waveform(2.0, 3)
    kwargs = dict(method="base", keep_ratio=1.0, max_new_tokens=8, do_sample=False)
    assert torch.equal(adapter.generate([wave], PROMPT, **kwargs).sequences,
                       adapter_for(model, processor).generate([wave], PROMPT, **kwargs).sequences)


def test_load_takes_a_dtype(saved):
    loaded, _ = load(saved[0], dtype=torch.bfloat16)
    assert loaded.get_input_embeddings().weight.dtype == torch.bfloat16


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load(tmp_path)


def test_corrupt_config_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load(tmp_path)


def test_unsupported_architecture_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ValueError, match="samp supports"):
        load(tmp_path)


def test_unsupported_model_object_is_rejected():
    with pytest.raises(ValueError, match="no samp adapter for Embedding"):
        adapter_for(torch.nn.Embedding(3, 2), None)


def test_glm_asr_remote_code_model_gets_a_clear_error():
    GlmasrModel = type("GlmasrModel", (torch.nn.Module,), {})  # the remote-code class name, as trust_remote_code loads it
    with pytest.raises(ValueError, match="remote-code GlmasrModel"):
        adapter_for(GlmasrModel(), None)
