"""Audio I/O, resampling, Slakh2100 reader, Slakh-style SoundFont rendering, subtractive-training
triplets, embedded corpora, torch Datasets of training segments and latent caches."""

from stemforge.data.__about__ import __version__
from stemforge.data.audio import AudioError, audio_info, read_audio, truncated_wav, write_audio
from stemforge.data.corpus import JSB_TO_SLAKH, find_midi_files, render_jsb, render_midi_folder
from stemforge.data.descriptors import StemDescriptors, describe_stem
from stemforge.data.instructions import InstructionFn, InstructionWriter
from stemforge.data.latent_cache import EncodeFn, LatentCacheDataset, write_latent_cache, write_latent_split
from stemforge.data.loudness import integrated_loudness
from stemforge.data.render import (
    RenderBackend,
    RenderConfig,
    RenderedStem,
    RenderedTrack,
    RenderError,
    available_backends,
    backend_version,
    default_soundfont,
    render_midi,
    renderer_problem,
    resolve_backend,
    resolve_soundfont,
)
from stemforge.data.resample import resample
from stemforge.data.segments import (
    ChoraleCropDataset,
    SegmentSource,
    SlakhStems,
    StemSegmentDataset,
    StyleReferenceSegments,
    SubtractiveItems,
)
from stemforge.data.slakh_dataset import DroppedTrack, SlakhDataset, TrackEntry, scan_tracks
from stemforge.data.slakh_format import (
    SLAKH_SPLITS,
    SlakhFormatError,
    StemInfo,
    TrackInfo,
    list_tracks,
    read_metadata,
    write_slakh_track,
)
from stemforge.data.triplets import SubtractiveTripletDataset, subtractive_triplet

__all__ = [
    "JSB_TO_SLAKH",
    "SLAKH_SPLITS",
    "AudioError",
    "ChoraleCropDataset",
    "DroppedTrack",
    "EncodeFn",
    "InstructionFn",
    "InstructionWriter",
    "LatentCacheDataset",
    "RenderBackend",
    "RenderConfig",
    "RenderError",
    "RenderedStem",
    "RenderedTrack",
    "SegmentSource",
    "SlakhDataset",
    "SlakhFormatError",
    "SlakhStems",
    "StemDescriptors",
    "StemInfo",
    "StemSegmentDataset",
    "StyleReferenceSegments",
    "SubtractiveItems",
    "SubtractiveTripletDataset",
    "TrackEntry",
    "TrackInfo",
    "__version__",
    "audio_info",
    "available_backends",
    "backend_version",
    "default_soundfont",
    "describe_stem",
    "find_midi_files",
    "integrated_loudness",
    "list_tracks",
    "read_audio",
    "read_metadata",
    "render_jsb",
    "render_midi",
    "render_midi_folder",
    "renderer_problem",
    "resample",
    "resolve_backend",
    "resolve_soundfont",
    "scan_tracks",
    "subtractive_triplet",
    "truncated_wav",
    "write_audio",
    "write_latent_cache",
    "write_latent_split",
    "write_slakh_track",
]
