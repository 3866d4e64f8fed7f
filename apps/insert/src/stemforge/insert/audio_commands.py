"""The audio commands end to end: read and check inputs, run the model in chunks, write the files.

Each function returns the paths it wrote; they are written only once everything succeeded
(:class:`~stemforge.insert.outputs.StagedOutputs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from stemforge.insert.accompany import accompany_chunk
from stemforge.insert.arrange import arrange_chunk
from stemforge.insert.audio_checkpoint import AudioModel
from stemforge.insert.audio_input import DEFAULT_MAX_SECONDS, InputAudio, read_input_audio, to_output_rate
from stemforge.insert.audio_pipeline import ChunkOptions, decode, encode, plan_chunks, sample_in_chunks
from stemforge.insert.errors import InsertError
from stemforge.insert.generate import generate_chunk
from stemforge.insert.insert_audio import insert_chunk
from stemforge.insert.outputs import StagedOutputs, check_out_dir
from stemforge.insert.progress import Reporter
from stemforge.insert.sampling import SamplingOptions
from stemforge.insert.separate import METHODS, Method, separate_chunk

#: The longest ``generate --seconds`` accepted (one hour of audio is a mistake, not a request).
MAX_GENERATE_SECONDS = 600.0


@dataclass(frozen=True)
class InputOptions:
    downmix: bool = False
    max_seconds: float = DEFAULT_MAX_SECONDS


def _read(model: AudioModel, path: Path, what: str, inputs: InputOptions) -> InputAudio:
    return read_input_audio(
        path, model.sample_rate, what=what, downmix=inputs.downmix, max_seconds=inputs.max_seconds
    )


def _write_stems(
    out: Path,
    names: list[str],
    waves: Tensor,
    model: AudioModel,
    rate: int,
    num_samples: int,
    protected: list[Path],
    mix: Tensor | None = None,
) -> list[Path]:
    """Write ``waves`` (K, N_model) as ``out/<name>.wav`` at ``rate``, plus ``out/mix.wav``."""
    with StagedOutputs(out, protected) as staged:
        for name, wave in zip(names, waves):
            staged.write_audio(
                out / f"{name}.wav", to_output_rate(wave, model.sample_rate, rate, num_samples), rate
            )
        if mix is not None:
            staged.write_audio(
                out / "mix.wav", to_output_rate(mix, model.sample_rate, rate, num_samples), rate
            )
        return staged.commit()


def _sample_from_mix(
    model: AudioModel,
    mix: InputAudio,
    num_stems: int,
    sample_chunk: Callable[[Tensor, Tensor, Any, Any], Tensor],
    sampling: SamplingOptions,
    chunking: ChunkOptions,
    reporter: Reporter,
) -> Tensor:
    """Encode the mixture, sample ``num_stems`` stem latents chunk by chunk with
    ``sample_chunk(mix_latent, x_T, generator, progress)`` and decode them to the mixture's length."""
    mix_latent = encode(model, mix.wave[None])[:, 0]
    latent = sample_in_chunks(
        model,
        mix.wave.shape[-1],
        {"mix": mix_latent},
        num_stems,
        lambda c, x_T, gen, prog: sample_chunk(c["mix"], x_T, gen, prog),
        sampling,
        chunking,
        reporter,
    )
    return decode(model, latent, mix.wave.shape[-1])


def run_separate(
    model: AudioModel,
    mix_path: Path,
    out: Path,
    *,
    method: str = "cfg",
    guidance: float = 2.0,
    sampling: SamplingOptions,
    chunking: ChunkOptions,
    inputs: InputOptions = InputOptions(),
    reporter: Reporter,
) -> list[Path]:
    if method not in METHODS:
        raise InsertError(f"--method {method}: choose one of {', '.join(METHODS)}")
    if model.single_stem:
        raise InsertError(
            f"--checkpoint {model.path}: an {model.mode} model generates one stem; separation needs a "
            "joint (msgld) checkpoint"
        )
    if method != "cfg":
        sampling.require_ddim(f"--method {method}")
    out = check_out_dir(out)
    mix = _read(model, mix_path, "mixture", inputs)
    waves = _sample_from_mix(
        model,
        mix,
        len(model.stems),
        lambda mix_latent, x_T, gen, prog: separate_chunk(
            model,
            mix_latent,
            x_T,
            method=cast(Method, method),
            guidance=guidance,
            options=sampling,
            generator=gen,  # type: ignore[arg-type]
            progress=prog,
        ),
        sampling,
        chunking,
        reporter,
    )
    return _write_stems(
        out, list(model.stems), waves, model, mix.original_rate, mix.original_samples, [mix.path]
    )


def _check_continuation(
    model: AudioModel,
    num_samples: int,
    sampling: SamplingOptions,
    chunking: ChunkOptions,
    reporter: Reporter,
    independent_chunks: bool,
) -> bool:
    """Whether the chunks continue each other; refuses, before any work, what continuation cannot do."""
    chunks = len(plan_chunks(model, num_samples, chunking)[2])
    if independent_chunks or chunks == 1:
        return False
    if sampling.sampler != "ddim":
        raise InsertError(
            f"--sampler {sampling.sampler}: the audio spans {chunks} chunks, and continuing each from the "
            "previous one (inpainting) runs on DDIM only; pass --sampler ddim, or --independent-chunks "
            "to sample the chunks independently and crossfade them"
        )
    if chunking.batch_size > 1:
        reporter.note(
            f"note: the {chunks} chunks continue each other, so they run one at a time; --batch-size "
            "has no effect here (--independent-chunks samples them in batches)"
        )
    return True


def run_generate(
    model: AudioModel,
    out: Path,
    *,
    seconds: float = 30.0,
    sample_rate: int | None = None,
    sampling: SamplingOptions,
    chunking: ChunkOptions,
    reporter: Reporter,
    independent_chunks: bool = False,
) -> list[Path]:
    if model.single_stem:
        raise InsertError(f"--checkpoint {model.path}: generation needs a joint (msgld) checkpoint")
    if not 0 < seconds <= MAX_GENERATE_SECONDS:
        raise InsertError(f"--seconds {seconds}: give a length in (0, {MAX_GENERATE_SECONDS:.0f}] seconds")
    rate = sample_rate or model.sample_rate
    if rate <= 0:
        raise InsertError(f"--sample-rate {rate}: give a positive rate in Hz")
    num_samples = max(1, round(seconds * model.sample_rate))
    continued = _check_continuation(model, num_samples, sampling, chunking, reporter, independent_chunks)
    out = check_out_dir(out)
    stems = sample_in_chunks(
        model,
        num_samples,
        {},
        len(model.stems),
        lambda c, x_T, gen, prog: generate_chunk(
            model,
            x_T,
            options=sampling,
            generator=gen,
            progress=prog,
            context=c.get("context"),
            known=c.get("known"),
        ),
        sampling,
        chunking,
        reporter,
        continued=continued,
    )
    waves = decode(model, stems, num_samples)
    out_samples = round(seconds * rate)
    return _write_stems(out, list(model.stems), waves, model, rate, out_samples, [], mix=waves.sum(0))


def parse_given(text: str) -> dict[str, Path]:
    """``bass=B.wav,drums=D.wav`` -> {"bass": B.wav, "drums": D.wav}."""
    given: dict[str, Path] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, file = item.partition("=")
        if not sep or not name.strip() or not file.strip():
            raise InsertError(
                f"--given {text!r}: expected STEM=FILE pairs separated by commas, e.g. bass=B.wav,drums=D.wav"
            )
        if name.strip() in given:
            raise InsertError(f"--given: stem {name.strip()!r} is given twice")
        given[name.strip()] = Path(file.strip())
    if not given:
        raise InsertError("--given is empty; give at least one STEM=FILE pair")
    return given


def run_arrange(
    model: AudioModel,
    given: dict[str, Path],
    out: Path,
    *,
    sampling: SamplingOptions,
    chunking: ChunkOptions,
    inputs: InputOptions = InputOptions(),
    reporter: Reporter,
    independent_chunks: bool = False,
) -> list[Path]:
    if model.single_stem:
        raise InsertError(f"--checkpoint {model.path}: arrangement needs a joint (msgld) checkpoint")
    sampling.require_ddim("arrangement by inpainting")
    for name in given:
        model.check_stem(name, "--given")
    if len(given) == len(model.stems):
        raise InsertError(
            f"--given names every stem ({', '.join(model.stems)}); leave out the ones to generate"
        )
    out = check_out_dir(out)
    audio = {name: _read(model, path, f"given stem {name}", inputs) for name, path in given.items()}
    num_samples = max(a.wave.shape[-1] for a in audio.values())
    waves = torch.zeros(len(model.stems), num_samples)
    mask = torch.zeros(1, len(model.stems), dtype=torch.bool)
    for name, a in audio.items():
        index = model.stems.index(name)
        waves[index, : a.wave.shape[-1]] = a.wave
        mask[0, index] = True
    continued = _check_continuation(model, num_samples, sampling, chunking, reporter, independent_chunks)
    given_latent = encode(model, waves)
    stems = sample_in_chunks(
        model,
        num_samples,
        {"given": given_latent},
        len(model.stems),
        lambda c, x_T, gen, prog: arrange_chunk(
            model,
            c["given"],
            mask.expand(x_T.shape[0], -1).to(x_T.device),
            x_T,
            options=sampling,
            generator=gen,
            progress=prog,
            context=c.get("context"),
            known=c.get("known"),
        ),
        sampling,
        chunking,
        reporter,
        continued=continued,
    )
    missing = [i for i, name in enumerate(model.stems) if name not in given]
    generated = decode(model, stems[:, missing], num_samples)
    first = next(iter(audio.values()))
    rate = first.original_rate
    out_samples = round(num_samples * rate / model.sample_rate)
    full = waves.clone()
    full[missing] = generated
    return _write_stems(
        out,
        [model.stems[i] for i in missing],
        generated,
        model,
        rate,
        out_samples,
        [a.path for a in audio.values()],
        mix=full.sum(0),
    )


def _text_condition(
    model: AudioModel, instruction: str | None, reporter: Reporter
) -> dict[str, Tensor] | None:
    """The instruction's MiniLM encoding (1, ...) for a text-conditioned checkpoint."""
    if instruction is not None and not instruction.strip():
        raise InsertError("--instruction is empty; describe the stem to insert, or leave the option out")
    if not model.has_text:
        if instruction:
            raise InsertError(
                f"--instruction: the checkpoint {model.label} ({model.path}) has no text conditioning, so the "
                "instruction cannot be used; leave out --instruction, or pass a text-conditioned checkpoint "
                "(`model.mode: subtractive`, e.g. configs/tiny-subtractive.yaml)"
            )
        return None
    if not instruction:
        reporter.note(
            f"note: no --instruction; {model.label} inserts the stem with its learned null instruction"
        )
        return None
    device = next(model.unet.parameters()).device
    return {k: v.to(device) for k, v in model.text_encoder()([instruction]).as_cond().items()}


def _insertion_inputs(model: AudioModel, stem: str, mix_path: Path, inputs: InputOptions) -> InputAudio:
    if model.mode == "subtractive":
        model.check_stem(stem)
        if stem not in model.insert_stems:
            raise InsertError(
                f"--stem {stem}: the checkpoint {model.path} was trained to insert {', '.join(model.insert_stems)}; "
                "choose one of them or another checkpoint"
            )
    elif model.mode == "accompaniment":
        if stem != model.target:
            raise InsertError(
                f"--stem {stem}: the checkpoint {model.path} generates {model.target!r} only; "
                f"pass --stem {model.target} or another checkpoint"
            )
    else:
        model.check_stem(stem)
        if len(model.stems) < 2:
            raise InsertError(f"--checkpoint {model.path}: a one-stem joint model cannot insert a stem")
    return _read(model, mix_path, "mixture", inputs)


def run_insert_audio(
    model: AudioModel,
    mix_path: Path,
    stem: str,
    out: Path,
    *,
    instruction: str | None = None,
    guidance: float = 1.0,
    sampling: SamplingOptions,
    chunking: ChunkOptions,
    inputs: InputOptions = InputOptions(),
    reporter: Reporter,
) -> list[Path]:
    out = check_out_dir(out)
    mix = _insertion_inputs(model, stem, mix_path, inputs)
    text = _text_condition(model, instruction, reporter)
    stems_out = 1 if model.single_stem else len(model.stems)
    wave = _sample_from_mix(
        model,
        mix,
        stems_out,
        lambda mix_latent, x_T, gen, prog: insert_chunk(
            model,
            stem,
            mix_latent,
            x_T,
            guidance=guidance,
            options=sampling,
            generator=gen,
            text=text,
            progress=prog,
        ),
        sampling,
        chunking,
        reporter,
    )
    return _write_stems(
        out, [stem], wave, model, mix.original_rate, mix.original_samples, [mix.path], mix=mix.wave + wave[0]
    )


@torch.no_grad()
def _style_vector(
    model: AudioModel, style: Path | None, style_latent: Tensor | None, reporter: Reporter
) -> Tensor | None:
    """The style-conditioned model's learned style vector (1, D) of the reference, or None."""
    if style_latent is None:
        if model.has_style:
            reporter.note(f"note: no --style; {model.label} accompanies with its learned null style")
        return None
    if model.style_encoder is None:
        reporter.note(
            f"note: {model.label} has no style input; --style {style} grounds the sampled stem's statistics only"
        )
        return None
    return model.style_encoder(style_latent.float())


def run_accompany(
    model: AudioModel,
    mix_path: Path,
    stem: str,
    out: Path,
    *,
    style: Path | None = None,
    style_strength: float = 0.7,
    guidance: float = 3.0,
    rescale: float = 0.7,
    sampling: SamplingOptions,
    chunking: ChunkOptions,
    inputs: InputOptions = InputOptions(),
    reporter: Reporter,
) -> list[Path]:
    if not 0 <= style_strength <= 1:
        raise InsertError(f"--style-strength {style_strength}: give a value in [0, 1]")
    if not 0 <= rescale <= 1:
        raise InsertError(f"--rescale {rescale}: give a value in [0, 1]")
    if guidance < 0:
        raise InsertError(f"--guidance {guidance}: must be >= 0")
    if model.mode == "subtractive":
        raise InsertError(
            f"--checkpoint {model.path}: a subtractive (text-conditioned) model inserts stems with "
            "`audio --instruction`; accompany needs an accompaniment or a joint (msgld) checkpoint"
        )
    out = check_out_dir(out)
    mix = _insertion_inputs(model, stem, mix_path, inputs)
    style_latent = None
    protected = [mix.path]
    if style is not None:
        reference = _read(model, style, "style reference", inputs)
        protected.append(reference.path)
        style_latent = encode(model, reference.wave[None])[:, 0]
        if style_latent.shape[-2] < 2:
            raise InsertError(
                f"--style {style}: too short for its statistics; give at least a second of audio"
            )
    style_vector = _style_vector(model, style, style_latent, reporter)
    if model.mode != "accompaniment":
        reporter.note(
            f"note: {model.label} is a joint model; the mixture enters as a constraint, so --guidance and "
            "--rescale are not used"
        )
    stems_out = 1 if model.mode == "accompaniment" else len(model.stems)
    wave = _sample_from_mix(
        model,
        mix,
        stems_out,
        lambda mix_latent, x_T, gen, prog: accompany_chunk(
            model,
            stem,
            mix_latent,
            x_T,
            style_latent=style_latent,
            style_strength=style_strength,
            style=style_vector,
            guidance=guidance,
            rescale=rescale,
            options=sampling,
            generator=gen,
            progress=prog,
        ),
        sampling,
        chunking,
        reporter,
    )
    return _write_stems(
        out, [stem], wave, model, mix.original_rate, mix.original_samples, protected, mix=mix.wave + wave[0]
    )
