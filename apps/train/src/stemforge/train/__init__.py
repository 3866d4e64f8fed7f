"""stemforge-train: data preparation and training of codecs, multi-track LDMs and MIDI insertion models on lightning-fabric + DeepSpeed."""

from stemforge.data import LatentCacheDataset  # in stemforge-data since 0.2.0; re-exported
from stemforge.pipelines import StyleConditionedUNet
from stemforge.train.__about__ import __version__
from stemforge.train.cache import build_latent_cache
from stemforge.train.checkpoint import (
    CheckpointError,
    check_checkpoint_files,
    export_checkpoint,
    latest_checkpoint,
    load_exported,
    resolve_checkpoint,
)
from stemforge.train.config import (
    ConfigError,
    DistConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    load_config,
)
from stemforge.train.ema import EMA
from stemforge.train.engine import FitResult, NonFiniteLossError, fit
from stemforge.train.launch import LaunchEnvironment, check_launch, detect_launch
from stemforge.train.ldm_eval import conditioning_val_losses
from stemforge.train.lr import scheduled_lr, warmup_lr
from stemforge.train.sampler import DataPosition, ShardedBatchSampler
from stemforge.train.strategy import deepspeed_config, make_fabric

__all__ = [
    "EMA",
    "CheckpointError",
    "ConfigError",
    "DataPosition",
    "DistConfig",
    "FitResult",
    "LatentCacheDataset",
    "LaunchEnvironment",
    "NonFiniteLossError",
    "OptimConfig",
    "RunConfig",
    "ShardedBatchSampler",
    "StyleConditionedUNet",
    "TrainConfig",
    "__version__",
    "apply_overrides",
    "build_latent_cache",
    "check_checkpoint_files",
    "check_launch",
    "conditioning_val_losses",
    "deepspeed_config",
    "detect_launch",
    "export_checkpoint",
    "fit",
    "latest_checkpoint",
    "load_config",
    "load_exported",
    "make_fabric",
    "resolve_checkpoint",
    "scheduled_lr",
    "warmup_lr",
]
