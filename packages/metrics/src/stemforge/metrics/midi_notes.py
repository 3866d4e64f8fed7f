"""Note-level precision / recall / F1 of a generated MIDI stem against a reference stem, as in
transcription evaluation (Bay et al., MIREX 2009; mir_eval.transcription, Raffel et al. 2014).

A note is (onset, offset, pitch). An estimated note matches a reference note when the pitches are
equal and |onset difference| <= ``onset_tolerance``; with ``with_offset`` the offsets must also
agree within max(``offset_min_tolerance``, ``offset_ratio`` x reference duration). Each note
matches at most one note: the number of matches is a maximum bipartite matching (augmenting
paths, Hopcroft & Karp 1973 style), so the counts do not depend on the order of the notes.
Times are in any unit (seconds, or grid steps for piano rolls) as long as the tolerances use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

__all__ = ["NoteScores", "note_scores", "notes_from_roll"]


@dataclass(frozen=True)
class NoteScores:
    precision: float
    recall: float
    f1: float
    matches: int
    num_estimated: int
    num_reference: int


def notes_from_roll(roll: Tensor) -> np.ndarray:
    """(T, 128) bool piano roll -> (K, 3) float array of (onset step, offset step, pitch), sorted by onset.

    A note is a maximal run of active steps of one pitch (a re-struck note needs a gap of one step).
    """
    if roll.dim() != 2 or roll.shape[1] != 128:
        raise ValueError(f"expected a (T, 128) piano roll, got {tuple(roll.shape)}")
    active = roll.bool().cpu().numpy()
    padded = np.pad(active, ((1, 1), (0, 0)))
    diff = np.diff(padded.astype(np.int8), axis=0)
    notes: list[tuple[int, int, int]] = []
    for pitch in range(128):
        starts = np.flatnonzero(diff[:, pitch] == 1)
        ends = np.flatnonzero(diff[:, pitch] == -1)
        notes.extend((int(s), int(e), pitch) for s, e in zip(starts, ends))
    notes.sort()
    return np.array(notes, dtype=np.float64).reshape(-1, 3)


def _max_matching(adjacency: list[list[int]], num_right: int) -> int:
    match_right = [-1] * num_right

    def augment(u: int, seen: list[bool]) -> bool:
        for v in adjacency[u]:
            if not seen[v]:
                seen[v] = True
                if match_right[v] == -1 or augment(match_right[v], seen):
                    match_right[v] = u
                    return True
        return False

    return sum(augment(u, [False] * num_right) for u in range(len(adjacency)))


def note_scores(
    estimated: np.ndarray,
    reference: np.ndarray,
    *,
    onset_tolerance: float = 0.05,
    with_offset: bool = False,
    offset_ratio: float = 0.2,
    offset_min_tolerance: float = 0.05,
) -> NoteScores:
    """Precision, recall and F1 of ``estimated`` (K, 3) notes against ``reference`` (M, 3) notes."""
    est = np.asarray(estimated, dtype=np.float64).reshape(-1, 3)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, 3)
    for name, notes in (("estimated", est), ("reference", ref)):
        if (notes[:, 1] <= notes[:, 0]).any():
            raise ValueError(f"{name} notes must have offset > onset")
    adjacency: list[list[int]] = []
    for i in range(len(est)):
        ok = (ref[:, 2] == est[i, 2]) & (np.abs(ref[:, 0] - est[i, 0]) <= onset_tolerance + 1e-12)
        if with_offset:
            tol = np.maximum(offset_min_tolerance, offset_ratio * (ref[:, 1] - ref[:, 0]))
            ok &= np.abs(ref[:, 1] - est[i, 1]) <= tol + 1e-12
        adjacency.append(np.flatnonzero(ok).tolist())
    matches = _max_matching(adjacency, len(ref))
    precision = matches / len(est) if len(est) else 0.0
    recall = matches / len(ref) if len(ref) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return NoteScores(precision, recall, f1, matches, len(est), len(ref))
