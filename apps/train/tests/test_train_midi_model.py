"""The MIDI insertion model of stemforge-train: planar convolutions against plain Conv3d, the pitch
support, the legacy config, transposition and the instruction descriptors, on random inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stemforge.train.tasks.midi import (
    NUM_CLASSES,
    REST,
    VoiceInsertionModel,
    VoiceModelConfig,
    text_cond,
    transpose_within,
)
from stemforge.train.tasks.midi_instructions import CONTOURS, REGISTERS, RHYTHMS, voice_descriptors


def small_config(text_dim: int = 0) -> VoiceModelConfig:
    from stemforge.unet3d import UNet3DConfig

    unet = UNet3DConfig.from_name("pianoroll-jsb", model_channels=8, head_channels=16, text_dim=text_dim)
    return VoiceModelConfig(unet, pitch_low=36, pitch_high=81)


def random_weights(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def test_planar_convolutions_equal_plain_conv3d_forward_and_backward():
    torch.manual_seed(0)
    config = small_config(text_dim=384)
    model = VoiceInsertionModel(config)
    random_weights(model, 1)
    reference = VoiceInsertionModel(config)
    reference.load_state_dict(model.state_dict())
    for module in reference.unet.modules():
        if isinstance(module, nn.Conv3d):
            module.__class__ = nn.Conv3d  # the unmodified 3x3x3 convolution
    assert any(type(m).__name__ == "_PlanarConv3d" for m in model.unet.modules())
    x = torch.randint(36, 82, (3, 4, 32))
    visible = torch.rand(3, 4, 32) < 0.5
    cond = text_cond(torch.randn(3, 384), drop=torch.tensor([False, True, False]))
    out, ref = model(x, visible, cond), reference(x, visible, cond)
    finite = torch.isfinite(ref)
    assert torch.equal(finite, torch.isfinite(out))
    # float32, two summation orders over <= 27 x 64 products of O(1) terms: 1e-4 relative.
    scale = ref[finite].abs().max()
    assert (out[finite] - ref[finite]).abs().max() <= 1e-4 * scale
    out[finite].square().mean().backward()
    ref[finite].square().mean().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-5 * float(q.grad.abs().max()) + 1e-8), name


def test_logits_cover_only_the_pitch_range_and_fold_outside_pitches():
    torch.manual_seed(0)
    model = VoiceInsertionModel(small_config()).eval()
    random_weights(model, 2)
    x = torch.randint(36, 82, (2, 4, 32))
    visible = torch.rand(2, 4, 32) < 0.5
    logits = model(x, visible)
    assert logits.shape == (2, 4, 32, NUM_CLASSES)
    support = torch.zeros(NUM_CLASSES, dtype=torch.bool)
    support[36:82] = True
    support[REST] = True
    assert torch.isinf(logits[..., ~support]).all() and (logits[..., ~support] < 0).all()
    assert torch.isfinite(logits[..., support]).all()
    probs = torch.softmax(logits, -1)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 4, 32), atol=1e-5)
    # A visible pitch outside 36..81 reads as the same pitch class folded into the range.
    low, folded = x.clone(), x.clone()
    low[:, 3, :4], folded[:, 3, :4] = 30, 42
    high, folded_high = x.clone(), x.clone()
    high[:, 0, :4], folded_high[:, 0, :4] = 90, 78
    vis = torch.ones_like(visible)
    vis[:, 1] = False
    assert torch.equal(model(low, vis), model(folded, vis))
    assert torch.equal(model(high, vis), model(folded_high, vis))
    assert config_round_trip(model.config) == model.config


def config_round_trip(config: VoiceModelConfig) -> VoiceModelConfig:
    return VoiceModelConfig.from_dict(config.to_dict())


def test_flat_unet_config_of_version_0_1_is_the_full_range():
    from stemforge.unet3d import UNet3DConfig

    legacy = UNet3DConfig.from_name("pianoroll-small").to_dict()
    config = VoiceModelConfig.from_dict(legacy)
    assert (config.pitch_low, config.pitch_high, config.bins) == (0, 127, 132)
    model = VoiceInsertionModel.from_config(legacy)
    assert torch.isfinite(model(torch.randint(0, 129, (1, 4, 16)), torch.rand(1, 4, 16) < 0.5)).all()
    jsb = VoiceModelConfig.from_name("jsb-small-text")
    assert (jsb.pitch_low, jsb.pitch_high, jsb.bins, jsb.text_dim) == (36, 81, 48, 384)
    with pytest.raises(ValueError, match="pitch range"):
        VoiceModelConfig(jsb.unet, pitch_low=90, pitch_high=80)
    with pytest.raises(ValueError, match="unknown keys"):
        VoiceModelConfig.from_dict({**jsb.to_dict(), "pitch_lo": 3})


def test_transposition_shifts_each_row_within_the_range():
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(40, 78, (200, 4, 16), generator=gen)
    batch[torch.rand(batch.shape, generator=gen) < 0.1] = REST
    batch[0] = REST  # a silent row stays as it is
    batch[1, :, :] = 36  # at the bottom of the range: only upward shifts
    out = transpose_within(batch, 36, 81, 5, torch.Generator().manual_seed(1))
    assert torch.equal(out == REST, batch == REST)
    shifts = []
    for row_in, row_out in zip(batch, out):
        pitched = row_in != REST
        if not pitched.any():
            assert torch.equal(row_in, row_out)
            continue
        diff = (row_out - row_in)[pitched]
        assert (diff == diff[0]).all()
        allowed = [
            k
            for k in range(-5, 6)
            if int(row_in[pitched].min()) + k >= 36 and int(row_in[pitched].max()) + k <= 81
        ]
        assert int(diff[0]) in allowed
        shifts.append(int(diff[0]))
    assert int((out[1] - batch[1]).min()) >= 0
    assert min(shifts) == -5 and max(shifts) == 5 and len(set(shifts)) == 11


def test_voice_descriptors_of_hand_written_voices():
    quarters_rising = torch.tensor([p for p in (60, 62, 64, 65, 67, 69, 71, 72) for _ in range(4)])
    assert voice_descriptors(quarters_rising, median_pitch=60.0) == (
        RHYTHMS.index("mostly quarter notes"),
        REGISTERS.index("high register"),
        CONTOURS.index("rising line"),
    )
    held_falling = torch.tensor([p for p in (50, 47) for _ in range(16)])
    assert voice_descriptors(held_falling, median_pitch=55.0) == (2, 2, 2)
    eighths_level = torch.tensor([p for p in (60, 62) * 8 for _ in range(2)])
    assert voice_descriptors(eighths_level, median_pitch=61.0) == (0, 1, 1)
    silent = torch.full((32,), REST)
    assert voice_descriptors(silent, median_pitch=61.0) == (2, 1, 1)


@pytest.fixture(scope="module")
def instruction_table():
    from stemforge.midi import JSB_STEMS
    from stemforge.train.tasks.midi_instructions import InstructionTable

    return InstructionTable.build(JSB_STEMS)


def test_instruction_table_holds_the_minilm_vector_of_each_crop_sentence(instruction_table):
    from stemforge.conditioning import TextEncoder
    from stemforge.midi import load_jsb

    table = instruction_table
    assert len(set(table.sentences)) == len(table.sentences) == 4 * 27
    assert table.pooled.shape == (108, 384)
    crops = torch.stack([c[:, :32] for c in load_jsb("valid")[:6]])
    target = torch.tensor([0, 1, 2, 3, 3, 0])
    sentences = [table.sentence_for(crops[b], int(target[b])) for b in range(6)]
    assert sentences[3].startswith("bass: ") and sentences[1].startswith("alto: ")
    expected = TextEncoder()(sentences).pooled
    assert torch.allclose(table.pooled_for(crops, target), expected, atol=1e-5)


def test_training_loss_with_instructions_reaches_the_text_path(instruction_table):
    from stemforge.train.config import TrainConfig
    from stemforge.train.tasks.midi import MidiTask

    config = TrainConfig.from_dict(
        {
            "task": "midi",
            "model": {
                "unet": {
                    "preset": "pianoroll-jsb",
                    "model_channels": 8,
                    "head_channels": 16,
                    "text_dim": 384,
                },
                "pitch_range": [36, 81],
                "instruction_dropout": 0.5,
            },
            "data": {"length": 32, "transpose": 3},
        }
    )
    task = MidiTask(config)
    task._instructions = instruction_table  # the same table the task would build
    torch.manual_seed(0)
    model = task.build_model()
    batch = torch.stack([task.train_dataset()[i] for i in range(0, 400, 50)])
    loss, _ = task.loss(model, batch, torch.Generator().manual_seed(0))
    assert 3.0 < loss.item() < 4.5  # the uniform prediction of an untrained model: log(47) = 3.85
    # Zero-initialised residual outputs block every gradient at initialisation; with random
    # weights the instruction's FiLM and cross-attention weights must receive gradients.
    random_weights(model, 3)
    loss, _ = task.loss(model, batch, torch.Generator().manual_seed(0))
    loss.backward()
    film = model.unet.embedder.text_film.weight.grad
    assert torch.isfinite(loss) and film is not None and float(film.abs().sum()) > 0
    cross = [m.to_kv.weight.grad for m in model.modules() if type(m).__name__ == "CrossAttention3D"]
    assert cross and all(g is not None and float(g.abs().sum()) > 0 for g in cross)
    meta = task.export_meta()
    assert meta["model_config"]["pitch_low"] == 36 and meta["model_config"]["unet"]["text_dim"] == 384
