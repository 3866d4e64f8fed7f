"""Import an original MSG-LD checkpoint (karchkha/MSG-LD, Karchkhadze et al. 2024) as a
:class:`~stemforge.pipelines.MultiTrackPipeline` that computes what the original computes::

    pipe = load_msgld_checkpoint("msgld.ckpt", "multichannel_musicldm_slakh_3d_eval.yaml",
                                 vocoder_config="hifigan/config_16k_64.json")
    pipe.save_pretrained("msgld-slakh")

The checkpoint is a PyTorch-Lightning ``.ckpt`` of ``MusicLDM`` (read with
``torch.load(weights_only=True)``: tensors only, nothing is unpickled as code). Its ``state_dict``:

- ``model.diffusion_model.*``: the 3D U-Net (openaimodel ``UNetModel``, ``dims=3``). Names map one
  to one onto :class:`~stemforge.unet3d.UNet3D` except ``time_embed`` -> ``embedder.time_embed``,
  ``skip_connection`` -> ``skip``, and the attention's 1x1 ``conv1d`` projections (``(out, in, 1)``)
  that become ``Linear`` weights. The original splits heads *before* q/k/v (``QKVAttentionLegacy``:
  per head one contiguous ``[q; k; v]`` block of the qkv output) while ``SelfAttention3D`` splits
  q/k/v first (``[q_heads; k_heads; v_heads]``), so the rows of ``qkv`` are permuted.
- ``model_ema.*``: ``LitEma`` buffers, one per U-Net parameter named ``diffusion_model.<name>`` with
  every "." removed (plus ``decay`` and ``num_updates``). They are found by removing the dots from
  the U-Net's names, never by re-inserting dots (``input_blocks.1.0`` and ``input_blocks.10`` only
  differ by dots). ``weights="ema"`` (the default, what ``generate_sample`` runs) uses them.
- ``first_stage_model.{encoder,decoder,quant_conv,post_quant_conv}.*``: the VAE;
  ``first_stage_model.vocoder.*``: HiFi-GAN with weight norm already removed (plain ``weight``);
  ``first_stage_model.loss.*``: the VAE's training loss (ignored, may hold stride-0 placeholders).
- the 12 schedule buffers (checked against the config's schedule), ``logvar`` and ``scale_factor``
  (only stored here: the config does not hold it).

The YAML is read by :func:`read_msgld_config`, a small reader for the block-style subset the MSG-LD
configs use (this package does not depend on PyYAML); a caller may instead pass the parsed dict.
The vocoder's shape is not in the YAML (the original reads ``src/hifigan/config_16k_64.json``):
``vocoder_config`` takes that JSON (path or dict); without it the released file's values are used.

The loaded pipeline records the original's sampler conventions (``sampler_defaults``: DDIM grid
and last step, eta 1, zero-mixture unconditional branch, guidance scales), so that its tasks and a
folder saved from it sample as the original does. Conventions of the original that stemforge's
defaults do not share, provided here as helpers:
:func:`msgld_ddim_parameters` (``make_ddim_timesteps("uniform")`` = ``range(0, N, N // S) + 1`` and
``alphas_prev[0] = alphas_cumprod[0]``), :func:`msgld_log_mel` (the ``TacotronSTFT`` front end:
centred frames, ``1 + N // hop`` of them) and :func:`msgld_schedule_buffers`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn

import torch
from torch import Tensor

from stemforge.pipelines.errors import PipelineError

__all__ = [
    "SCHEDULE_BUFFERS",
    "load_msgld_checkpoint",
    "msgld_ddim_parameters",
    "msgld_ddim_timesteps",
    "msgld_log_mel",
    "msgld_schedule_buffers",
    "msgld_state_dict_shapes",
    "msgld_unet_state_dict",
    "read_msgld_config",
]

Weights = Literal["ema", "raw"]

UNET_PREFIX = "model.diffusion_model."
EMA_PREFIX = "model_ema."
VAE_PREFIX = "first_stage_model."
VOCODER_PREFIX = "first_stage_model.vocoder."
#: Present in real checkpoints, unused at inference (the VAE's LPIPS + discriminator loss).
IGNORED_PREFIXES = ("first_stage_model.loss.",)
#: ``DDPM.register_schedule`` buffers, in state-dict order (``lvlb_weights`` is not persistent).
SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
#: openaimodel ``UNetModel`` options stemforge's UNet3D reproduces only at these values.
_UNET_FIXED: dict[str, Any] = {
    "dims": 3,
    "use_spatial_transformer": False,
    "use_scale_shift_norm": False,
    "resblock_updown": False,
    "use_new_attention_order": False,
    "conv_resample": True,
    "num_heads_upsample": -1,
    "num_classes": None,
    "context_dim": None,
    "extra_film_condition_dim": None,
}
_SCHEDULE_RTOL = 1e-5


# ---------------------------------------------------------------------------------------------
# The YAML config


def read_msgld_config(path: str | Path) -> dict[str, Any]:
    """Parse an MSG-LD YAML config (block mappings and sequences, flow lists, plain or quoted
    scalars; no anchors, tags or block scalars). Raises :class:`PipelineError` naming the file and
    line of anything outside that subset: parse such a file with PyYAML and pass the dict instead."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PipelineError(f"{path}: cannot read the MSG-LD config ({err})") from err
    data = _YamlReader(text, str(path)).document()
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a YAML mapping at the top level (model:, data:, ...)")
    return data


class _YamlReader:
    _INT = re.compile(r"[-+]?\d+\Z")
    _FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\Z")

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines: list[tuple[int, str, int]] = []
        for number, raw in enumerate(text.splitlines(), 1):
            content = self._strip_comment(raw).rstrip()
            if not content.strip():
                continue
            indent = len(content) - len(content.lstrip(" "))
            if content[indent] == "\t":
                self._fail(number, "tab indentation")
            if content.strip() in ("---", "..."):
                if self.lines:
                    self._fail(number, "several YAML documents")
                continue
            if content.lstrip().startswith("%"):
                self._fail(number, "YAML directives")
            self.lines.append((indent, content.strip(), number))
        self.pos = 0

    def _fail(self, line: int, what: str) -> NoReturn:
        raise PipelineError(
            f"{self.source} line {line}: {what} is outside the YAML subset stemforge reads; parse the "
            "file with PyYAML (yaml.safe_load) and pass the dict as the config"
        )

    @staticmethod
    def _strip_comment(line: str) -> str:
        quote = None
        for i, char in enumerate(line):
            if quote:
                if char == quote:
                    quote = None
            elif char in "'\"" and (i == 0 or line[i - 1] in " \t:-[{,"):
                quote = char
            elif char == "#" and (i == 0 or line[i - 1] in " \t"):
                return line[:i]
        return line

    def document(self) -> Any:
        if not self.lines:
            return None
        value = self._block(self.lines[0][0])
        if self.pos < len(self.lines):
            self._fail(self.lines[self.pos][2], "content after the top-level block")
        return value

    @staticmethod
    def _is_item(content: str) -> bool:
        return content == "-" or content.startswith("- ")

    def _block(self, indent: int) -> Any:
        if self._is_item(self.lines[self.pos][1]):
            return self._sequence(indent)
        return self._mapping(indent)

    def _nested(self, indent: int) -> Any:
        """The value of a ``key:`` with nothing after the colon."""
        if self.pos >= len(self.lines):
            return None
        next_indent, content, _ = self.lines[self.pos]
        if next_indent > indent:
            return self._block(next_indent)
        if next_indent == indent and self._is_item(content):
            return self._sequence(indent)  # YAML allows "key:\n- a" at the key's own indentation
        return None

    def _mapping(self, indent: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while self.pos < len(self.lines):
            line_indent, content, number = self.lines[self.pos]
            if line_indent < indent or (line_indent == indent and self._is_item(content)):
                break
            if line_indent > indent:
                self._fail(number, "unexpected indentation")
            key, rest = self._split_key(content, number)
            if key is None:
                self._fail(number, f"a line that is not 'key: value' ({content[:40]!r})")
            if key in out:
                self._fail(number, f"the repeated key {key!r}")
            self.pos += 1
            out[key] = self._nested(indent) if rest == "" else self._scalar(rest, number)
        return out

    def _sequence(self, indent: int) -> list[Any]:
        out: list[Any] = []
        while self.pos < len(self.lines):
            line_indent, content, number = self.lines[self.pos]
            if line_indent != indent or not self._is_item(content):
                if line_indent > indent:
                    self._fail(number, "unexpected indentation")
                break
            rest = content[1:].lstrip()
            if rest == "":
                self.pos += 1
                has_block = self.pos < len(self.lines) and self.lines[self.pos][0] > indent
                out.append(self._block(self.lines[self.pos][0]) if has_block else None)
            elif self._split_key(rest, number)[0] is not None:
                # "- key: value" opens a mapping whose keys sit at the column of "key".
                column = line_indent + len(content) - len(rest)
                self.lines[self.pos] = (column, rest, number)
                out.append(self._mapping(column))
            else:
                out.append(self._scalar(rest, number))
                self.pos += 1
        return out

    def _split_key(self, content: str, number: int) -> tuple[str | None, str]:
        if content[0] in "'\"":
            end = content.find(content[0], 1)
            if end < 0 or not content[end + 1 :].lstrip().startswith(":"):
                return None, ""
            key = content[1:end]
            rest = content[end + 1 :].lstrip()[1:]
            return key, rest.strip()
        if content[0] in "[{&*!|>":
            return None, ""
        match = re.search(r":(\s|$)", content)
        if match is None:
            return None, ""
        return content[: match.start()].strip(), content[match.end() :].strip()

    def _scalar(self, text: str, number: int) -> Any:
        text = text.strip()
        if text[:1] in ("&", "*", "!", "|", ">", "@", "`"):
            self._fail(number, f"the YAML construct {text[:1]!r}")
        if text[:1] == "[" or text[:1] == "{":
            if text[-1:] != {"[": "]", "{": "}"}[text[0]]:
                self._fail(number, "a flow collection spanning several lines")
            items = [item for item in self._split_flow(text[1:-1], number) if item.strip()]
            if text[0] == "[":
                return [self._scalar(item, number) for item in items]
            out = {}
            for item in items:
                key, rest = self._split_key(item.strip(), number)
                if key is None:
                    self._fail(number, f"the flow mapping entry {item.strip()!r}")
                out[key] = self._scalar(rest, number) if rest else None
            return out
        if text[:1] == "'":
            if len(text) < 2 or text[-1] != "'":
                self._fail(number, "an unterminated quoted string")
            return text[1:-1].replace("''", "'")
        if text[:1] == '"':
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                self._fail(number, "a double-quoted string with YAML-only escapes")
            return value
        lowered = text.lower()
        if lowered in ("null", "~"):
            return None
        if lowered in ("true", "yes", "on"):
            return True
        if lowered in ("false", "no", "off"):
            return False
        if self._INT.match(text):
            return int(text)
        if self._FLOAT.match(text):
            return float(text)
        if lowered in (".inf", "+.inf", "-.inf", ".nan"):
            return float(lowered.replace(".", ""))
        return text

    def _split_flow(self, text: str, number: int) -> list[str]:
        parts, depth, quote, start = [], 0, None, 0
        for i, char in enumerate(text):
            if quote:
                quote = None if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
            elif char == "," and depth == 0:
                parts.append(text[start:i])
                start = i + 1
        if depth or quote:
            self._fail(number, "an unbalanced flow collection")
        parts.append(text[start:])
        return parts


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What the loader needs from the YAML, with the original classes' defaults."""

    unet: Any  # UNet3DConfig
    vae: Any  # AutoencoderKLConfig
    mel: Any  # MelConfig
    schedule: Any  # ScheduleConfig
    stems: tuple[str, ...]
    latent_t_size: int
    separate_guidance: float


def _get(config: Mapping[str, Any], dotted: str, source: str, default: Any = ...) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is not ...:
                return default
            raise PipelineError(
                f"{source}: the MSG-LD config has no {dotted!r}; give the config the model was trained with"
            )
        node = node[part]
    return node


def _settings(config: Mapping[str, Any], source: str) -> _Settings:
    from stemforge.codec import AutoencoderKLConfig, MelConfig
    from stemforge.samplers import ScheduleConfig
    from stemforge.unet3d import PRESETS, UNet3DConfig

    params = _get(config, "model.params", source)
    unet_params = _get(params, "unet_config.params", source)
    for key, value in _UNET_FIXED.items():
        if unet_params.get(key, value) != value:
            raise PipelineError(
                f"{source}: model.params.unet_config.params.{key} = {unet_params[key]!r}; stemforge's UNet3D "
                f"reproduces the MSG-LD U-Net only with {key} = {value!r}"
            )
    head_channels = int(unet_params.get("num_head_channels", -1))
    if head_channels <= 0:
        raise PipelineError(
            f"{source}: model.params.unet_config.params.num_head_channels = {head_channels}; UNet3D needs a fixed "
            "number of channels per head (MSG-LD uses 32), not a fixed number of heads"
        )
    conditioning = params.get("conditioning_key", "concat")
    if conditioning != "concat":
        raise PipelineError(
            f"{source}: model.params.conditioning_key = {conditioning!r}; MSG-LD's mixture conditioning is 'concat'"
        )
    num_stems = int(params.get("num_stems", unet_params.get("in_channels", 4)))
    stems_value = _get(config, "data.params.path.stems", source, None)
    if stems_value is None:
        from stemforge.unet3d import DEFAULT_STEMS

        if num_stems != len(DEFAULT_STEMS):
            raise PipelineError(f"{source}: data.params.path.stems is missing; name the {num_stems} stems")
        stems_value = DEFAULT_STEMS
    stems = tuple(str(s) for s in stems_value)
    in_channels, out_channels = int(unet_params["in_channels"]), int(unet_params["out_channels"])
    if not len(stems) == num_stems == in_channels == out_channels:
        raise PipelineError(
            f"{source}: {len(stems)} stems in data.params.path.stems, num_stems = {num_stems}, U-Net in/out "
            f"channels {in_channels}/{out_channels}; MSG-LD has one U-Net channel per stem"
        )
    try:
        unet = UNet3DConfig(
            name="msgld-import",
            stems=stems,
            in_channels=in_channels,
            out_channels=out_channels,
            model_channels=int(unet_params["model_channels"]),
            channel_mult=tuple(int(m) for m in unet_params["channel_mult"]),
            num_res_blocks=int(unet_params["num_res_blocks"]),
            attention_downsample=tuple(sorted(int(r) for r in unet_params["attention_resolutions"])),
            head_channels=head_channels,
            dropout=float(unet_params.get("dropout", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise PipelineError(
            f"{source}: the U-Net settings do not describe a UNet3D ({type(err).__name__}: {err})"
        ) from err
    for preset in PRESETS.values():
        if dataclasses.replace(unet, name=preset.name, stems=preset.stems) == preset:
            unet = dataclasses.replace(unet, name=preset.name)
    first_stage = _get(params, "first_stage_config.params", source)
    dd = _get(first_stage, "ddconfig", source)
    if list(dd.get("attn_resolutions") or []):
        raise PipelineError(
            f"{source}: first_stage_config ddconfig.attn_resolutions = {dd['attn_resolutions']}; stemforge's "
            "AutoencoderKL has attention in the middle block only (MusicLDM uses [])"
        )
    for key, value in (("double_z", True), ("in_channels", 1), ("out_ch", 1), ("downsample_time", False)):
        if dd.get(key, value) != value:
            raise PipelineError(
                f"{source}: first_stage_config ddconfig.{key} = {dd[key]!r}; MSG-LD's VAE has {value!r}"
            )
    vae = AutoencoderKLConfig(
        in_channels=1,
        ch=int(dd["ch"]),
        ch_mult=tuple(int(m) for m in dd["ch_mult"]),
        num_res_blocks=int(dd["num_res_blocks"]),
        z_channels=int(dd["z_channels"]),
        embed_dim=int(first_stage["embed_dim"]),
        mid_attention=True,
    )
    pre = _get(config, "data.params.preprocessing", source)
    mel = MelConfig(
        sample_rate=int(_get(pre, "audio.sampling_rate", source)),
        n_fft=int(_get(pre, "stft.filter_length", source)),
        win_length=int(_get(pre, "stft.win_length", source)),
        hop_length=int(_get(pre, "stft.hop_length", source)),
        n_mels=int(_get(pre, "mel.n_mel_channels", source)),
        f_min=float(_get(pre, "mel.mel_fmin", source)),
        f_max=float(_get(pre, "mel.mel_fmax", source)),
        framing="tacotron",  # the original's TacotronSTFT framing (frames centred on multiples of hop)
    )
    # DDPM's defaults (latent_diffusion/models/musicldm.py); its "linear" betas are linear in sqrt(beta).
    beta_schedule = params.get("beta_schedule", "linear")
    if beta_schedule != "linear":
        raise PipelineError(
            f"{source}: model.params.beta_schedule = {beta_schedule!r}; only 'linear' is supported"
        )
    parameterization = params.get("parameterization", "eps")
    if parameterization != "eps":
        raise PipelineError(
            f"{source}: model.params.parameterization = {parameterization!r}; MSG-LD predicts 'eps'"
        )
    schedule = ScheduleConfig(
        kind="sqrt_linear",
        num_steps=int(params.get("timesteps", 1000)),
        beta_start=float(params.get("linear_start", 1e-4)),
        beta_end=float(params.get("linear_end", 2e-2)),
    )
    latent_t_size = int(params.get("latent_t_size", 256))
    latent_f_size = int(params.get("latent_f_size", 16))
    if latent_f_size * vae.compression != mel.n_mels:
        raise PipelineError(
            f"{source}: latent_f_size {latent_f_size} x VAE compression {vae.compression} != {mel.n_mels} mel bands"
        )
    # generate_sample's w for separation (the eval config has 1.0; the original's default is 1.0).
    guidance = _get(params, "evaluation_params.unconditional_guidance_scale", source, 1.0)
    try:
        separate_guidance = float(guidance)
    except (TypeError, ValueError) as err:
        raise PipelineError(
            f"{source}: model.params.evaluation_params.unconditional_guidance_scale = {guidance!r} is not a number"
        ) from err
    if not separate_guidance >= 0:
        raise PipelineError(
            f"{source}: model.params.evaluation_params.unconditional_guidance_scale = {guidance!r} must be >= 0"
        )
    return _Settings(unet, vae, mel, schedule, stems, latent_t_size, separate_guidance)


def _vocoder_config(value: str | Path | Mapping[str, Any] | None, mel: Any) -> Any:
    from stemforge.codec import HiFiGANConfig

    if value is None:
        return HiFiGANConfig.from_name("msgld")
    source = "vocoder_config"
    if not isinstance(value, Mapping):
        source = str(value)
        try:
            value = json.loads(Path(value).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise PipelineError(f"{source}: not a readable HiFi-GAN JSON config ({err})") from err
        if not isinstance(value, Mapping):
            raise PipelineError(f"{source}: expected a JSON object (HiFi-GAN's config_16k_64.json)")
    if str(value.get("resblock", "1")) != "1":
        raise PipelineError(
            f"{source}: resblock {value['resblock']!r}; stemforge's HiFiGAN is the V1 generator (resblock '1')"
        )
    for key, expected in (("sampling_rate", mel.sample_rate), ("hop_size", mel.hop_length)):
        if key in value and int(value[key]) != expected:
            raise PipelineError(f"{source}: {key} = {value[key]} but the MSG-LD config has {expected}")
    try:
        return HiFiGANConfig.from_dict(
            {
                "num_mels": int(value.get("num_mels", mel.n_mels)),
                **{
                    key: value[key]
                    for key in (
                        "upsample_rates",
                        "upsample_kernel_sizes",
                        "upsample_initial_channel",
                        "resblock_kernel_sizes",
                        "resblock_dilation_sizes",
                    )
                },
            }
        )
    except (KeyError, TypeError, ValueError) as err:
        raise PipelineError(
            f"{source}: not a HiFi-GAN generator config ({type(err).__name__}: {err})"
        ) from err


# ---------------------------------------------------------------------------------------------
# The checkpoint


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise PipelineError(f"{path}: no such file; give the MSG-LD Lightning checkpoint (.ckpt)")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if not (magic.startswith(b"PK\x03\x04") or magic.startswith(b"\x80")):
        raise PipelineError(
            f"{path}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle); give the "
            "MSG-LD Lightning checkpoint (.ckpt)"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, ... depending on the damage
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(err).splitlines()]
        lines = [line for line in lines if line]
        # torch's weights_only refusal is a paragraph; its "WeightsUnpickler error" line says why.
        reason = next((line for line in lines if "WeightsUnpickler error" in line), lines[0] if lines else "")
        raise PipelineError(
            f"{path}: not a checkpoint that loads with torch.load(weights_only=True), i.e. without running "
            f"code from the file ({type(err).__name__}: {reason[:240]})"
        ) from err
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not any(
        isinstance(k, str) and k.startswith(UNET_PREFIX) for k in data
    ):
        raise PipelineError(
            f"{path}: not an MSG-LD checkpoint (no 'state_dict' with '{UNET_PREFIX}*' tensors)"
        )
    bad = [k for k, v in data.items() if not isinstance(v, Tensor)]
    if bad:
        raise PipelineError(f"{path}: state_dict entries that are not tensors: {bad[:5]}")
    return dict(data)


def _original_unet_name(name: str) -> str:
    """A UNet3D parameter name -> openaimodel's name (below ``model.diffusion_model.``)."""
    if name.startswith("embedder."):
        name = name.removeprefix("embedder.")
    return name.replace(".skip.", ".skip_connection.")


def _ema_name(original: str) -> str:
    # LitEma registers ``DiffusionWrapper.named_parameters()`` with every "." removed (ema.py:23-25).
    return EMA_PREFIX + ("diffusion_model." + original).replace(".", "")


def _unet_plan(unet: torch.nn.Module) -> dict[str, tuple[str, tuple[int, ...], int]]:
    """Original name -> (UNet3D name, original shape, heads of a legacy qkv tensor or 0)."""
    from stemforge.unet3d.attention import SelfAttention3D

    heads = {f"{name}.qkv.": m.heads for name, m in unet.named_modules() if isinstance(m, SelfAttention3D)}
    linear = {
        f"{name}.{proj}.weight"
        for name, m in unet.named_modules()
        if isinstance(m, SelfAttention3D)
        for proj in ("qkv", "proj_out")
    }
    if any(
        isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in ("to_q", "to_kv")
        for n, m in unet.named_modules()
    ):
        raise PipelineError("an MSG-LD U-Net has no cross-attention")
    plan = {}
    for name, tensor in unet.state_dict().items():
        shape = tuple(tensor.shape) + ((1,) if name in linear else ())  # conv1d (out, in, 1)
        plan[_original_unet_name(name)] = (
            name,
            shape,
            next((h for p, h in heads.items() if name.startswith(p)), 0),
        )
    return plan


def msgld_unet_state_dict(
    state: Mapping[str, Tensor], unet: torch.nn.Module, weights: Weights = "ema"
) -> dict[str, Tensor]:
    """The UNet3D state dict from an MSG-LD ``state_dict`` (raw ``model.diffusion_model.*`` or the
    ``model_ema.*`` buffers). Assumes :func:`load_msgld_checkpoint`'s key checks passed."""
    out = {}
    for original, (name, _, heads) in _unet_plan(unet).items():
        tensor = state[UNET_PREFIX + original] if weights == "raw" else state[_ema_name(original)]
        tensor = tensor.detach().contiguous().float()
        if name.endswith(("qkv.weight", "proj_out.weight")):
            tensor = tensor.squeeze(-1)
        if heads:
            # QKVAttentionLegacy rows are (head, {q,k,v}, d); SelfAttention3D wants ({q,k,v}, head, d).
            rest = tensor.shape[1:]
            tensor = tensor.reshape(heads, 3, -1, *rest).transpose(0, 1).reshape(-1, *rest).contiguous()
        out[name] = tensor
    return out


def _expected_keys(
    unet: torch.nn.Module, vae: torch.nn.Module, vocoder: torch.nn.Module, num_steps: int, with_ema: bool
) -> dict[str, tuple[int, ...]]:
    expected: dict[str, tuple[int, ...]] = {"logvar": (num_steps,), "scale_factor": ()}
    expected.update({name: (num_steps,) for name in SCHEDULE_BUFFERS})
    plan = _unet_plan(unet)
    expected.update({UNET_PREFIX + original: shape for original, (_, shape, _) in plan.items()})
    if with_ema:
        ema = {_ema_name(original): shape for original, (_, shape, _) in plan.items()}
        if len(ema) != len(plan):
            raise PipelineError("two U-Net parameter names collide once their dots are removed (LitEma)")
        expected.update(ema)
        expected.update({EMA_PREFIX + "decay": (), EMA_PREFIX + "num_updates": ()})
    expected.update({VAE_PREFIX + k: tuple(v.shape) for k, v in vae.state_dict().items()})
    for key, value in vocoder.state_dict().items():
        # weight norm removed by get_vocoder: one plain ``weight`` per convolution
        if key.endswith(".parametrizations.weight.original0"):
            continue
        key = key.replace(".parametrizations.weight.original1", ".weight")
        expected[VOCODER_PREFIX + key] = tuple(value.shape)
    return expected


def msgld_state_dict_shapes(
    config: str | Path | Mapping[str, Any],
    *,
    vocoder_config: str | Path | Mapping[str, Any] | None = None,
    with_ema: bool = True,
) -> dict[str, tuple[int, ...]]:
    """Every ``state_dict`` key :func:`load_msgld_checkpoint` requires for ``config``, with its
    shape (built on the meta device: no memory, no weights); ``first_stage_model.loss.*`` is not
    listed (ignored when present)."""
    from stemforge.codec import AutoencoderKL, HiFiGAN
    from stemforge.unet3d import UNet3D

    name = "the given config" if isinstance(config, Mapping) else str(config)
    settings = _settings(config if isinstance(config, Mapping) else read_msgld_config(config), name)
    vocoder = _vocoder_config(vocoder_config, settings.mel)
    with torch.device("meta"):
        modules = UNet3D(settings.unet), AutoencoderKL(settings.vae), HiFiGAN(vocoder)
    return _expected_keys(*modules, settings.schedule.num_steps, with_ema)


def _check_keys(
    state: Mapping[str, Tensor], expected: dict[str, tuple[int, ...]], ckpt: Path, config: str
) -> None:
    present = {k for k in state if not k.startswith(IGNORED_PREFIXES)}
    missing = sorted(set(expected) - present)
    surplus = sorted(present - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    if missing or surplus or wrong:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} missing ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})"
            )
        if surplus:
            parts.append(
                f"{len(surplus)} surplus ({', '.join(surplus[:5])}{', ...' if len(surplus) > 5 else ''})"
            )
        if wrong:
            parts.append(
                f"{len(wrong)} with another shape ({'; '.join(wrong[:5])}{'; ...' if len(wrong) > 5 else ''})"
            )
        raise PipelineError(
            f"{ckpt}: does not match the MSG-LD model of {config}: {'; '.join(parts)}; pass the config (and "
            "vocoder_config) the checkpoint was trained with"
        )


def msgld_schedule_buffers(schedule: Any) -> dict[str, Tensor]:
    """``DDPM.register_schedule``'s 12 buffers (float32, computed in float64 as numpy does there)
    from a stemforge :class:`~stemforge.samplers.NoiseSchedule` (v_posterior = 0)."""
    betas = schedule.betas.double()
    alphas = 1.0 - betas
    alphas_cumprod = torch.cumprod(alphas, 0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    posterior_variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
    values = {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / alphas_cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1).sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * prev.sqrt() / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
    }
    return {name: values[name].float() for name in SCHEDULE_BUFFERS}


def _check_schedule(state: Mapping[str, Tensor], schedule: Any, ckpt: Path, config: str) -> None:
    for name, ours in msgld_schedule_buffers(schedule).items():
        stored = state[name].detach().float()
        if not torch.allclose(stored, ours, rtol=_SCHEDULE_RTOL, atol=0.0):
            cfg = schedule.config
            raise PipelineError(
                f"{ckpt}: the stored schedule buffer {name!r} differs from the schedule of {config} "
                f"(linear {cfg.beta_start} -> {cfg.beta_end}, {cfg.num_steps} steps; max relative error "
                f"{float(((stored - ours).abs() / ours.abs().clamp(min=1e-30)).max()):.2e}); pass the config the "
                "checkpoint was trained with"
            )


# ---------------------------------------------------------------------------------------------
# The original's sampler and front-end conventions


def msgld_ddim_timesteps(num_steps: int, num_train_steps: int = 1000) -> Tensor:
    """``make_ddim_timesteps("uniform", S, N)``: ``range(0, N, N // S) + 1``, ascending int64.

    As in the original, S that does not divide N gives more than S steps (S = 300: 334). For S
    dividing N it equals ``stemforge.samplers.timesteps(schedule, S, "leading")`` reversed."""
    if not 1 <= num_steps <= num_train_steps:
        raise PipelineError(f"num_steps={num_steps} must lie in [1, {num_train_steps}]")
    return torch.arange(0, num_train_steps, num_train_steps // num_steps, dtype=torch.int64) + 1


def msgld_ddim_parameters(alphas_cumprod: Tensor, num_steps: int, eta: float = 1.0) -> dict[str, Tensor]:
    """``DDIMSampler.make_schedule`` (models/ddim.py) from the float32 ``alphas_cumprod`` buffer:
    ``timesteps`` (int64), ``alphas`` and ``sqrt_one_minus_alphas`` (float32), ``alphas_prev`` and
    ``sigmas`` (float64, as numpy computes them there). ``alphas_prev[0]`` is ``alphas_cumprod[0]``,
    not 1: the original's last step stops at t = 0's noise level, while stemforge's ``ddim_sample``
    ends at the clean sample."""
    alphas_cumprod = alphas_cumprod.float()
    steps = msgld_ddim_timesteps(num_steps, alphas_cumprod.shape[0])
    alphas = alphas_cumprod[steps]
    alphas_prev = torch.cat([alphas_cumprod[:1], alphas_cumprod[steps[:-1]]]).double()
    # Bit for bit as there: ``numpy_array / tensor`` runs Tensor.__rtruediv__, i.e. the float32
    # reciprocal of ``1 - alphas`` times the float64 array.
    sigmas = eta * torch.sqrt((1 - alphas).reciprocal() * (1 - alphas_prev) * (1 - alphas / alphas_prev))
    return {
        "timesteps": steps,
        "alphas": alphas,
        "alphas_prev": alphas_prev,
        "sigmas": sigmas,
        "sqrt_one_minus_alphas": torch.sqrt(1.0 - alphas),
    }


def msgld_log_mel(wave: Tensor, config: Any = None) -> Tensor:
    """The original front end (``TacotronSTFT.mel_spectrogram``): waveform (..., N) -> natural-log
    mel (..., 1 + N // hop, n_mels), frames centred on multiples of ``hop`` (reflect padding of
    ``n_fft / 2``). stemforge's :class:`~stemforge.codec.MelFrontEnd` computes the same frames but
    the last with ``MelConfig(framing="tacotron")`` (what imported pipelines' codecs use); its default
    framing pads ``(n_fft - hop) / 2`` and centres frames half a hop later."""
    from stemforge.codec import MelConfig, mel_filterbank

    cfg = config or MelConfig()
    lead, num_samples = wave.shape[:-1], wave.shape[-1]
    pad = cfg.n_fft // 2
    if num_samples <= pad:
        raise PipelineError(f"msgld_log_mel: {num_samples} samples is too short for reflect padding of {pad}")
    flat = torch.nn.functional.pad(wave.reshape(-1, 1, num_samples).float(), (pad, pad), mode="reflect")
    # Periodic Hann, as scipy's get_window("hann", fftbins=True) in the original STFT.
    window = torch.hann_window(cfg.win_length, dtype=torch.float32, device=wave.device)
    left = (cfg.n_fft - cfg.win_length) // 2
    window = torch.nn.functional.pad(window, (left, cfg.n_fft - cfg.win_length - left))
    spec = torch.stft(
        flat.squeeze(1), cfg.n_fft, cfg.hop_length, cfg.n_fft, window, center=False, return_complex=True
    )
    filters = (
        mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max).float().to(wave.device)
    )
    mel = torch.log(torch.clamp(filters @ spec.abs(), min=1e-5))
    return mel.transpose(-1, -2).reshape(*lead, mel.shape[-1], cfg.n_mels)


# ---------------------------------------------------------------------------------------------
# The loader


def load_msgld_checkpoint(
    ckpt_path: str | Path,
    config_path: str | Path | Mapping[str, Any],
    *,
    vocoder_config: str | Path | Mapping[str, Any] | None = None,
    weights: Weights = "ema",
    device: torch.device | str = "cpu",
) -> Any:
    """An original MSG-LD checkpoint as a :class:`~stemforge.pipelines.MultiTrackPipeline`.

    The pipeline records the original's sampler conventions
    (:meth:`~stemforge.pipelines.sampling.SamplerDefaults.msgld`, saved in ``pipeline.json``): the
    ``make_ddim_timesteps("uniform")`` DDIM grid whose last step stops at ``alphas_cumprod[0]``,
    eta 1, an all-zero mixture latent for the unconditional branch, separation with the config's
    ``evaluation_params.unconditional_guidance_scale`` (default 1) and w = 0 for generation and
    arrangement.

    ``config_path``: the YAML it was trained with (or its parsed dict); ``vocoder_config``: the
    HiFi-GAN JSON (path or dict; default the released ``config_16k_64.json`` values);
    ``weights``: ``"ema"`` (default, the weights the original samples with) or ``"raw"``. Every
    tensor the model needs must be in the checkpoint with its shape and nothing else may be there
    (besides the VAE's training loss); errors are :class:`PipelineError` naming the file and keys.
    """
    from stemforge.codec import MelVAECodec, MelVAECodecConfig, map_hifigan_state_dict, map_ldm_vae_state_dict
    from stemforge.pipelines.multitrack import MultiTrackPipeline
    from stemforge.pipelines.sampling import SamplerDefaults
    from stemforge.samplers import NoiseSchedule
    from stemforge.unet3d import UNet3D

    if weights not in ("ema", "raw"):
        raise PipelineError(f"weights={weights!r}; choose 'ema' (what MSG-LD samples with) or 'raw'")
    ckpt = Path(ckpt_path)
    if isinstance(config_path, Mapping):
        config, config_name = config_path, "the given config"
    else:
        config, config_name = read_msgld_config(config_path), str(config_path)
    settings = _settings(config, config_name)
    try:
        codec_config = MelVAECodecConfig(
            settings.mel, settings.vae, _vocoder_config(vocoder_config, settings.mel)
        )
    except ValueError as err:
        if isinstance(err, PipelineError):
            raise
        raise PipelineError(
            f"{config_name}: the VAE, vocoder and front end do not fit together ({err})"
        ) from err
    state = _read_state_dict(ckpt)
    unet = UNet3D(settings.unet)
    codec = MelVAECodec(codec_config)
    with_ema = weights == "ema" or any(k.startswith(EMA_PREFIX) for k in state)
    if weights == "ema" and not any(k.startswith(EMA_PREFIX) for k in state):
        raise PipelineError(f"{ckpt}: has no EMA weights ('{EMA_PREFIX}*'); load it with weights='raw'")
    expected = _expected_keys(unet, codec.vae, codec.vocoder, settings.schedule.num_steps, with_ema)
    _check_keys(state, expected, ckpt, config_name)
    schedule = NoiseSchedule(settings.schedule)
    _check_schedule(state, schedule, ckpt, config_name)
    unet.load_state_dict(msgld_unet_state_dict(state, unet, weights), strict=True)
    vae_state = {k: v.contiguous().float() for k, v in map_ldm_vae_state_dict(state).items()}
    codec.vae.load_state_dict(vae_state, strict=True)
    vocoder_state = {k: v for k, v in state.items() if k.startswith(VOCODER_PREFIX)}
    codec.vocoder.load_state_dict(
        {k: v.contiguous().float() for k, v in map_hifigan_state_dict(vocoder_state).items()}, strict=True
    )
    scale_factor = float(state["scale_factor"])
    if not math.isfinite(scale_factor) or scale_factor <= 0:
        raise PipelineError(
            f"{ckpt}: scale_factor = {scale_factor}; expected a positive number (1 / latent std)"
        )
    codec.scale_factor.fill_(scale_factor)
    mel = settings.mel
    return MultiTrackPipeline(
        path=ckpt,
        unet=unet.eval().requires_grad_(False),
        codec=codec.eval().requires_grad_(False),
        schedule=schedule,
        prediction="epsilon",
        stems=settings.stems,
        mode="msgld",
        target=None,
        label=f"MSG-LD {ckpt.stem} ({weights} weights)",
        segment_seconds=settings.latent_t_size * settings.vae.compression * mel.hop_length / mel.sample_rate,
        sampler_defaults=SamplerDefaults.msgld(settings.separate_guidance),
    ).to(torch.device(device))
