"""The audio commands end to end: read and check inputs, run the model in chunks, write the files.

Each function returns the paths it wrote; they are written only once everything succeeded
(:class:`~stemforge.insert.outputs.StagedOutputs`). Inputs are paths, or audio already read and
checked by :func:`~stemforge.insert.audio_input.load_input_audio` (the command line reads every
input before it loads the model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from stemforge.insert.audio_input import DEFAULT_MAX_SECONDS, InputAudio, load_input_audio, to_output_rate
from stemforge.insert.errors import InsertError
from stemforge.insert.outputs import StagedOutputs, check_out_dir
from stemforge.insert.progress import Reporter
from stemforge.pipelines import ChunkOptions, MultiTrackPipeline, OutputChecks, SamplingOptions, limit_mix

AudioModel = MultiTrackPipeline
#: An input file: its path, or the audio :func:`load_input_audio` read from it.
AudioSource = Path | InputAudio


@dataclass(frozen=True)
class InputOptions:
    downmix: bool = False
    max_seconds: float = DEFAULT_MAX_SECONDS


def read_source(source: AudioSource, what: str, inputs: InputOptions) -> InputAudio:
    """``source`` read and checked at its own rate (audio already read is returned as it is)."""
    if isinstance(source, InputAudio):
        return source
    return load_input_audio(source, what=what, downmix=inputs.downmix, max_seconds=inputs.max_seconds)


def _read(model: AudioModel, source: AudioSource, what: str, inputs: InputOptions) -> InputAudio:
    return read_source(source, what, inputs).at_rate(model.sample_rate)


def _write_stems(
    out: Path,
    names: list[str],
    waves: Tensor,
    model: AudioModel,
    rate: int,
    num_samples: int,
    protected: list[Path],
    mix: Tensor | None = None,
    reporter: Reporter | None = None,
) -> list[Path]:
    """Write ``waves`` (K, N_model) as ``out/<name>.wav`` at ``rate``, plus ``out/mix.wav`` (limited to
    -1 dBFS when the sum would clip, :func:`limit_mix`) and ``out/mix.json`` saying so."""
    mix_info: dict[str, float | bool] = {}
    if mix is not None:
        mix, mix_info = limit_mix(mix)
        if mix_info["peak_normalised"] and reporter is not None:
            reporter.note(
                f"note: the stems sum to a peak of {mix_info['peak_of_sum']:.3f}; mix.wav is scaled by "
                f"{mix_info['gain_db']:+.2f} dB so that it does not clip (the stems are unchanged; see mix.json)"
            )
    with StagedOutputs(out, protected) as staged:
        for name, wave in zip(names, waves):
            staged.write_audio(
                out / f"{name}.wav", to_output_rate(wave, model.sample_rate, rate, num_samples), rate
            )
        if mix is not None:
            staged.write_audio(
                out / "mix.wav", to_output_rate(mix, model.sample_rate, rate, num_samples), rate
            )
            text = json.dumps({"file": "mix.wav", **mix_info}, indent=2)
            staged.write(out / "mix.json", lambda path: path.write_text(text + "\n"))
        return staged.commit()


def run_separate(
    model: AudioModel,
    mix_path: AudioSource,
    out: Path,
    *,
    method: str = "cfg",
    guidance: float = 2.0,
    sampling: SamplingOptions,
    chunking: ChunkOptions,
    inputs: InputOptions = InputOptions(),
    reporter: Reporter,
    checks: OutputChecks = OutputChecks(),
) -> list[Path]:
    model.check_separation(method, sampling)
    out = check_out_dir(out)
    mix = _read(model, mix_path, "mixture", inputs)
    waves = model.separate_waves(
        mix.wave,
        method=method,
        guidance=guidance,
        sampling=sampling,
        chunking=chunking,
        reporter=reporter,
        checks=checks,
    )
    return _write_stems(
        out, list(model.stems), waves, model, mix.original_rate, mix.original_samples, [mix.path]
    )


def run_generate(
    model: AudioModel,
    out: Path,
    *,
    seconds: float = 30.0,
    sample_rate: int | None = None,
    sampling: SamplingOptions,
    chunking: ChunkOptions,
    reporter: Reporter,
    checks: OutputChecks = OutputChecks(),
    independent_chunks: bool = False,
) -> list[Path]:
    model.check_generation(seconds)
    rate = model.sample_rate if sample_rate is None else sample_rate
    if rate <= 0:
        raise InsertError(f"--sample-rate {rate}: give a positive rate in Hz")
    num_samples = max(1, round(seconds * model.sample_rate))
    out = check_out_dir(out)
    waves = model.generate_waves(
        num_samples,
        sampling=sampling,
        chunking=chunking,
        reporter=reporter,
        checks=checks,
        independent_chunks=independent_chunks,
    )
    out_samples = round(seconds * rate)
    return _write_stems(
        out, list(model.stems), waves, model, rate, out_samples, [], mix=waves.sum(0), reporter=reporter
    )


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
    given: dict[str, AudioSource],
    out: Path,
    *,
    sampling: SamplingOptions,
    chunking: ChunkOptions,
    inputs: InputOptions = InputOptions(),
    reporter: Reporter,
    checks: OutputChecks = OutputChecks(),
    independent_chunks: bool = False,
) -> list[Path]:
    model.check_arrangement(list(given), sampling)
    out = check_out_dir(out)
    audio = {name: _read(model, path, f"given stem {name}", inputs) for name, path in given.items()}
    names, generated, waves = model.arrange_waves(
        {name: a.wave for name, a in audio.items()},
        sampling=sampling,
        chunking=chunking,
        reporter=reporter,
        checks=checks,
        independent_chunks=independent_chunks,
    )
    num_samples = waves.shape[-1]
    first = next(iter(audio.values()))
    rate = first.original_rate
    out_samples = round(num_samples * rate / model.sample_rate)
    full = waves.clone()
    full[[model.stems.index(n) for n in names]] = generated
    return _write_stems(
        out,
        names,
        generated,
        model,
        rate,
        out_samples,
        [a.path for a in audio.values()],
        mix=full.sum(0),
        reporter=reporter,
    )


def run_insert_audio(
    model: AudioModel,
    mix_path: AudioSource,
    stem: str,
    out: Path,
    *,
    instruction: str | None = None,
    guidance: float = 1.0,
    sampling: SamplingOptions,
    chunking: ChunkOptions,
    inputs: InputOptions = InputOptions(),
    reporter: Reporter,
    checks: OutputChecks = OutputChecks(),
) -> list[Path]:
    out = check_out_dir(out)
    model.check_insertion(stem)
    mix = _read(model, mix_path, "mixture", inputs)
    wave = model.insert_waves(
        mix.wave,
        stem,
        instruction=instruction,
        guidance=guidance,
        sampling=sampling,
        chunking=chunking,
        reporter=reporter,
        checks=checks,
    )
    return _write_stems(
        out,
        [stem],
        wave,
        model,
        mix.original_rate,
        mix.original_samples,
        [mix.path],
        mix=mix.wave + wave[0],
        reporter=reporter,
    )


def run_accompany(
    model: AudioModel,
    mix_path: AudioSource,
    stem: str,
    out: Path,
    *,
    style: AudioSource | None = None,
    style_strength: float = 0.7,
    guidance: float = 3.0,
    rescale: float = 0.7,
    sampling: SamplingOptions,
    chunking: ChunkOptions,
    inputs: InputOptions = InputOptions(),
    reporter: Reporter,
    checks: OutputChecks = OutputChecks(),
) -> list[Path]:
    model.check_accompaniment(style_strength, guidance, rescale)
    out = check_out_dir(out)
    model.check_insertion(stem)
    mix = _read(model, mix_path, "mixture", inputs)
    protected = [mix.path]
    reference = None
    if style is not None:
        reference = _read(model, style, "style reference", inputs)
        protected.append(reference.path)
    wave = model.accompany_waves(
        mix.wave,
        stem,
        style=None if reference is None else reference.wave,
        style_name=str(style if reference is None else reference.path),
        style_strength=style_strength,
        guidance=guidance,
        rescale=rescale,
        sampling=sampling,
        chunking=chunking,
        reporter=reporter,
        checks=checks,
    )
    return _write_stems(
        out,
        [stem],
        wave,
        model,
        mix.original_rate,
        mix.original_samples,
        protected,
        mix=mix.wave + wave[0],
        reporter=reporter,
    )
