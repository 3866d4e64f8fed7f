"""The TF checkpoint reader against the real MSD_musicnn checkpoint that the musicnn wheel ships."""

import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from stemforge.metrics import crc32c, list_tf_checkpoint, musicnn_checkpoint_prefix, read_tf_checkpoint


def test_crc32c_known_vectors():
    # RFC 3720 appendix B.4 test vectors for CRC-32C.
    assert crc32c(b"\x00" * 32) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"123456789") != zlib.crc32(b"123456789")  # Castagnoli, not the zlib polynomial


def test_lists_every_variable_with_consistent_sizes():
    entries = list_tf_checkpoint(musicnn_checkpoint_prefix())
    weights = {k: v for k, v in entries.items() if "Adam" not in k and "power" not in k}
    # 8 convolutions + 2 dense layers (kernel, bias) and 11 batch norms (4 tensors each).
    assert len(weights) == 8 * 2 + 2 * 2 + 11 * 4
    # Every Adam slot mirrors its variable's shape, as TF1's optimizer creates them.
    for name, entry in weights.items():
        for slot in ("Adam", "Adam_1"):
            if f"{name}/{slot}" in entries:
                assert entries[f"{name}/{slot}"].shape == entry.shape
    assert entries["conv2d/kernel"].shape == (7, 38, 1, 204)  # int(0.4 * 96) mel bins
    assert entries["dense/kernel"].shape == (1506, 200)
    for entry in entries.values():
        assert entry.size == int(np.prod(entry.shape, dtype=np.int64)) * entry.dtype.itemsize


def test_every_tensor_matches_its_stored_crc():
    # read_tf_checkpoint verifies each tensor's bytes against the index's CRC-32C.
    tensors = read_tf_checkpoint(musicnn_checkpoint_prefix())
    assert len(tensors) == len(list_tf_checkpoint(musicnn_checkpoint_prefix()))
    gamma = tensors["batch_normalization_1/gamma"]
    assert gamma.dtype == np.float32 and np.isfinite(gamma).all() and gamma.std() > 0
    assert (tensors["batch_normalization_9/moving_variance"] > 0).all()


def _copy_checkpoint(tmp_path: Path) -> str:
    src = Path(musicnn_checkpoint_prefix())
    for name in (".index", ".data-00000-of-00001"):
        shutil.copy(src / name, tmp_path / f"ckpt{name}")
    return str(tmp_path / "ckpt")


def test_corrupt_data_is_detected(tmp_path):
    prefix = _copy_checkpoint(tmp_path)
    entry = list_tf_checkpoint(prefix)["dense/kernel"]
    data = bytearray(Path(prefix + ".data-00000-of-00001").read_bytes())
    data[entry.offset + 100] ^= 0x01
    Path(prefix + ".data-00000-of-00001").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC-32C mismatch"):
        read_tf_checkpoint(prefix, ["dense/kernel"])
    # The other tensors are intact and still read.
    assert read_tf_checkpoint(prefix, ["dense/bias"])["dense/bias"].shape == (200,)


def test_corrupt_index_is_detected(tmp_path):
    prefix = _copy_checkpoint(tmp_path)
    index = bytearray(Path(prefix + ".index").read_bytes())
    index[40] ^= 0x01
    Path(prefix + ".index").write_bytes(bytes(index))
    with pytest.raises(ValueError, match="CRC mismatch"):
        list_tf_checkpoint(prefix)


def test_missing_checkpoint_and_variable_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint prefix"):
        list_tf_checkpoint(tmp_path / "nothing")
    with pytest.raises(KeyError, match="no variables named"):
        read_tf_checkpoint(musicnn_checkpoint_prefix(), ["not/there"])
