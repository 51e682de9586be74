"""Micro-expression datasets: image sequences plus a coding sheet (.xlsx, or a .csv export).

Each clip's frames from onset to offset (all frames when the sheet gives no usable offset) are
encoded at index time into an mp4 with one output frame per captured frame at 25 fps and a silent
audio track, so these silent, high-speed recordings go through the same audio-visual pipeline.
The subject is the dataset's own subject id; the protocol is leave-one-subject-out.

Layouts (coding-sheet column names compare without case, spaces or punctuation):

- SAMM: frame folders ``<subject>/<Filename>/*.jpg`` (e.g. ``006/006_1_2/006_05562.jpg``);
  sheet with ``Subject, Filename, Onset Frame, Apex Frame, Offset Frame, Estimated Emotion``
  (title/notes rows above the header are skipped). Frame numbers are the last digits of a frame's
  file name.
- CASME II: ``sub<NN>/<Filename>/img<N>.jpg`` under e.g. ``CASME2-RAW/``; sheet
  ``Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Estimated Emotion``.
- SMIC (HS): ``HS/<subject>/micro/<negative|positive|surprise>/<clip>/*.bmp`` — no sheet; the
  label is the folder.
- CAS(ME)^3 part A — GUESSED: frames ``<subject>/<Filename>/color/*.jpg`` (e.g.
  ``spNO.1/a/color/1.jpg``) and a sheet with ``Subject, Filename, Onset, Apex, Offset, emotion``.
- MMEW — GUESSED: frames ``Micro_Expression/<emotion>/<Filename>/*.jpg`` and a sheet with
  ``Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Estimated Emotion``.

Clips whose emotion is outside the registry's label set are kept as unlabeled clips.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from avfmae.data.parsers import Clip, ParseResult
from avfmae.data.parsers._common import as_int, find_table, image_dirs, last_number, safe_id
from avfmae.data.registry import DatasetError, DatasetSpec

_ALIASES = {
    "happy": ("happiness", "happy"),
    "happiness": ("happiness", "happy"),
    "sad": ("sadness", "sad"),
    "sadness": ("sadness", "sad"),
    "other": ("other", "others"),
    "others": ("others", "other"),
    "angry": ("anger",),
    "surprised": ("surprise",),
}


def _label(raw: object, spec: DatasetSpec) -> str | None:
    text = str(raw or "").strip().lower()
    for cand in (text, *_ALIASES.get(text, ())):
        if cand in spec.labels:
            return cand
    return None


def _frames_in(frames: list[Path], onset: int | None, offset: int | None) -> list[Path]:
    if onset is None:
        return frames
    stop = offset if offset and offset >= onset else None
    sel = [f for f in frames
           if (n := last_number(f.name)) is not None and n >= onset and (stop is None or n <= stop)]
    return sel


def _sheet_clips(
    root: Path, spec: DatasetSpec, res: ParseResult, cols: dict[str, str],
    subject_dir: Callable, subject_id: Callable, leaf: str | None = None,
) -> None:
    """Clips from a coding sheet. ``cols`` maps role → column name (subject, filename, onset,
    offset, emotion); ``subject_dir(value)`` gives the folder names a subject may have,
    ``subject_id(value)`` the manifest subject."""
    sheet, rows = find_table(root, cols.values())
    key = {role: _norm(name) for role, name in cols.items()}
    dirs = image_dirs(root)
    by_name: dict[str, list[Path]] = {}
    for d in dirs:
        if leaf and d.name != leaf:
            continue
        by_name.setdefault(d.parent.name if leaf else d.name, []).append(d)
    for row in rows:
        filename = str(row.get(key["filename"]) or "").strip()
        subject_raw = row.get(key["subject"])
        if not filename or subject_raw in (None, ""):
            continue
        cands = by_name.get(filename, [])
        names = subject_dir(subject_raw)
        if len(cands) > 1:
            cands = [d for d in cands if any(n in d.parts for n in names)] or cands
        if len(cands) != 1:
            why = "no frame folder" if not cands else f"{len(cands)} frame folders"
            res.excluded.append((filename, f"{why} named {filename!r} for subject {subject_raw}"))
            continue
        onset, offset = as_int(row.get(key["onset"])), as_int(row.get(key["offset"]))
        frames = _frames_in(dirs[cands[0]], onset, offset)
        if not frames:
            res.excluded.append((filename, f"no frames between onset {onset} and offset {offset}"))
            continue
        subject = subject_id(subject_raw)
        label = _label(row.get(key["emotion"]), spec)
        if label is None:
            res.skip(f"emotion outside the {spec.num_classes}-class set: kept unlabeled")
        clip_id = safe_id(filename if filename.startswith(subject) else f"{subject}_{filename}")
        res.clips.append(Clip(clip_id, subject=subject, label=label, frames=frames))
    if not res.clips:
        raise DatasetError(f"{root}: no clips matched the coding sheet {sheet.name}")


def _norm(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def parse_samm(root: Path, spec: DatasetSpec) -> ParseResult:
    res = ParseResult([])

    def ids(v: object) -> str:
        n = as_int(v)
        return f"{n:03d}" if n is not None else str(v).strip()

    _sheet_clips(root, spec, res, {"subject": "Subject", "filename": "Filename",
                                   "onset": "Onset Frame", "offset": "Offset Frame",
                                   "emotion": "Estimated Emotion"},
                 subject_dir=lambda v: [ids(v)], subject_id=ids)
    return res


def parse_casme2(root: Path, spec: DatasetSpec) -> ParseResult:
    res = ParseResult([])

    def ids(v: object) -> str:
        n = as_int(v)
        return f"sub{n:02d}" if n is not None else str(v).strip()

    _sheet_clips(root, spec, res, {"subject": "Subject", "filename": "Filename",
                                   "onset": "OnsetFrame", "offset": "OffsetFrame",
                                   "emotion": "Estimated Emotion"},
                 subject_dir=lambda v: [ids(v)], subject_id=ids)
    return res


def parse_casme3(root: Path, spec: DatasetSpec) -> ParseResult:
    res = ParseResult([])

    def ids(v: object) -> str:
        return safe_id(str(v).strip())

    _sheet_clips(root, spec, res, {"subject": "Subject", "filename": "Filename",
                                   "onset": "Onset", "offset": "Offset", "emotion": "emotion"},
                 subject_dir=lambda v: [str(v).strip()], subject_id=ids, leaf="color")
    return res


def parse_mmew(root: Path, spec: DatasetSpec) -> ParseResult:
    res = ParseResult([])

    def ids(v: object) -> str:
        n = as_int(v)
        return f"S{n:02d}" if n is not None else str(v).strip()

    _sheet_clips(root, spec, res, {"subject": "Subject", "filename": "Filename",
                                   "onset": "OnsetFrame", "offset": "OffsetFrame",
                                   "emotion": "Estimated Emotion"},
                 subject_dir=lambda v: [ids(v), str(v).strip()], subject_id=ids)
    return res


def parse_smic(root: Path, spec: DatasetSpec) -> ParseResult:
    res = ParseResult([])
    for d, frames in image_dirs(root).items():
        parts = d.parts
        if len(parts) < 5 or parts[-3] != "micro" or parts[-5] != "HS":
            continue
        subject, label_dir = parts[-4], parts[-2].lower()
        label = label_dir if label_dir in spec.labels else None
        if label is None:
            res.skip(f"folder {label_dir!r} is not a SMIC class: kept unlabeled")
        res.clips.append(Clip(safe_id(d.name), subject=subject, label=label, frames=frames))
    if not res.clips:
        raise DatasetError(f"{root}: no SMIC clips (HS/<subject>/micro/<class>/<clip>/*.bmp)")
    return res
