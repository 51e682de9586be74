"""Helpers shared by the parsers: sorting, ids, table readers (CSV and .xlsx), media encoding."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

from avfmae.data.registry import DatasetError

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".flv", ".m4v", ".mpg", ".mpeg")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers numerically (``img9`` before ``img10``)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(text))]


def safe_id(text: str) -> str:
    """A filesystem-safe clip id: runs of other characters become ``_``."""
    out = _SAFE.sub("_", text).strip("._-")
    if not out:
        out = "clip_" + hashlib.sha1(text.encode()).hexdigest()[:10]
    return out


def last_number(name: str) -> int | None:
    """The last run of digits in a file name's stem (frame numbers: ``img46`` → 46)."""
    found = re.findall(r"\d+", Path(name).stem)
    return int(found[-1]) if found else None


def hidden(name: str) -> bool:
    """macOS resource forks and dot files that datasets shipped from a Mac carry."""
    return name.startswith(".")


def walk_files(root: Path, exts: tuple[str, ...]) -> Iterator[Path]:
    """Every file under ``root`` with one of ``exts`` (case-insensitive), in sorted order."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not hidden(d))
        for f in sorted(filenames):
            if not hidden(f) and f.lower().endswith(exts):
                yield Path(dirpath) / f


def image_dirs(root: Path) -> dict[Path, list[Path]]:
    """Directories under ``root`` that directly hold images → their images (natural order)."""
    out: dict[Path, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not hidden(d))
        imgs = [f for f in filenames if not hidden(f) and f.lower().endswith(IMAGE_EXTS)]
        if imgs:
            out[Path(dirpath)] = [Path(dirpath) / f for f in sorted(imgs, key=natural_key)]
    return out


def find_video(folder: Path, stem: str) -> Path | None:
    """``folder/stem.<video ext>`` if one exists."""
    for ext in VIDEO_EXTS:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{what} not found: expected {path}")
    return path


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------

_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def read_xlsx(path: Path, sheet: int = 0) -> list[list[object]]:
    """Rows of one worksheet of an .xlsx file as lists of str/float/None (no dependency).

    Reads shared strings, inline strings, numbers and booleans; formulas give their cached value.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DatasetError(f"{path}: not a readable .xlsx workbook ({err})") from None
    with zf:
        shared: list[str] = []
        if "xl/sharedStrings.xml" in zf.namelist():
            root = ET.fromstring(zf.read("xl/sharedStrings.xml"))
            for si in root.findall("m:si", _NS):
                shared.append("".join(t.text or "" for t in si.iter(f"{{{_NS['m']}}}t")))
        book = ET.fromstring(zf.read("xl/workbook.xml"))
        sheets = book.findall("m:sheets/m:sheet", _NS)
        if not sheets:
            raise DatasetError(f"{path}: workbook has no worksheet")
        rid = sheets[sheet].get(f"{{{_REL_NS}}}id")
        rels = ET.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
        target = next(r.get("Target") for r in rels if r.get("Id") == rid)
        target = target.lstrip("/")
        member = target if target.startswith("xl/") else f"xl/{target}"
        data = ET.fromstring(zf.read(member))
    rows: list[list[object]] = []
    for row in data.iter(f"{{{_NS['m']}}}row"):
        values: dict[int, object] = {}
        for c in row.findall("m:c", _NS):
            col = _col_index(c.get("r", ""), len(values))
            kind = c.get("t", "n")
            v = c.find("m:v", _NS)
            if kind == "inlineStr":
                values[col] = "".join(t.text or "" for t in c.iter(f"{{{_NS['m']}}}t"))
            elif v is None or v.text is None:
                values[col] = None
            elif kind == "s":
                values[col] = shared[int(v.text)]
            elif kind in ("str", "e"):
                values[col] = v.text
            elif kind == "b":
                values[col] = v.text == "1"
            else:
                values[col] = float(v.text)
        width = max(values) + 1 if values else 0
        rows.append([values.get(i) for i in range(width)])
    return rows


def _col_index(ref: str, default: int) -> int:
    letters = "".join(ch for ch in ref if ch.isalpha())
    if not letters:
        return default
    n = 0
    for ch in letters.upper():
        n = n * 26 + (ord(ch) - 64)
    return n - 1


def read_rows(path: Path) -> list[list[object]]:
    """Rows of a .xlsx or .csv file."""
    if path.suffix.lower() == ".xlsx":
        return read_xlsx(path)
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        return [list(r) for r in csv.reader(f)]


def _norm(text: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower()) if text is not None else ""


def read_table(path: Path, required: Iterable[str]) -> list[dict[str, object]]:
    """Rows of an annotation table as dicts keyed by normalised header names.

    The header is the first row holding every ``required`` column (header names compare without
    case, spaces or punctuation: "Onset Frame" = "OnsetFrame"); rows above it (titles, notes) are
    ignored, as are blank rows below it.
    """
    need = [_norm(r) for r in required]
    rows = read_rows(path)
    for i, row in enumerate(rows):
        header = [_norm(h) for h in row]
        if all(n in header for n in need):
            out = []
            for r in rows[i + 1:]:
                if not any(v not in (None, "") for v in r):
                    continue
                out.append({h: (r[j] if j < len(r) else None) for j, h in enumerate(header) if h})
            return out
    raise DatasetError(
        f"{path}: no header row with the columns {', '.join(required)} (guessed format; "
        f"export the annotation sheet with these column names)"
    )


def find_table(root: Path, required: Iterable[str], patterns: tuple[str, ...] = ("*.xlsx", "*.csv"),
               ) -> tuple[Path, list[dict[str, object]]]:
    """The first annotation file under ``root`` (top level first) with the required columns."""
    required = list(required)
    candidates: list[Path] = []
    for pat in patterns:
        candidates += sorted(p for p in root.glob(pat) if not hidden(p.name))
    for pat in patterns:
        candidates += sorted(p for p in root.glob(f"*/{pat}") if not hidden(p.name))
    errors = []
    for path in candidates:
        try:
            return path, read_table(path, required)
        except DatasetError as err:
            errors.append(str(err))
    raise DatasetError(
        f"{root}: no annotation table (.xlsx or .csv) with the columns {', '.join(required)}"
        + (f"; tried {', '.join(str(p.name) for p in candidates)}" if candidates else "")
    )


def as_int(value: object) -> int | None:
    """Integer of a cell (``"12"``, ``12.0``); ``None`` when empty or not a number."""
    if value is None:
        return None
    try:
        return int(float(str(value).strip()))
    except ValueError:
        return None


def as_float(value: object) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        return float(str(value).strip())
    except ValueError:
        return None


# ----------------------------------------------------------------------------------------------
# Media (ffmpeg)
# ----------------------------------------------------------------------------------------------


def ffmpeg_bin() -> str:
    exe = shutil.which("ffmpeg")
    if not exe:
        raise DatasetError(
            "ffmpeg not found on PATH; install it (e.g. `apt-get install -y "
            "--no-install-recommends ffmpeg`)"
        )
    return exe


def _run_ffmpeg(args: list[str], out: Path) -> None:
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    cmd = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args, str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        msg = (proc.stderr or "").strip().splitlines()
        raise RuntimeError(msg[-1] if msg else f"ffmpeg exited with {proc.returncode}")
    os.replace(tmp, out)


def encode_frames(frames: list[Path], out: Path, fps: float = 25.0, silent_audio: bool = True,
                  ) -> Path:
    """Encode an image sequence (one output frame per image) into an H.264 mp4.

    With ``silent_audio`` a silent 16 kHz mono track of the same duration is added, so silent
    datasets (micro-expressions) pass through the same audio-visual pipeline as the others.
    """
    if not frames:
        raise RuntimeError("no frames")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.with_name(f".{out.stem}.frames")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    try:
        ext = frames[0].suffix.lower()
        for i, f in enumerate(frames):
            dst = work / f"{i:06d}{ext}"
            try:
                os.link(f, dst)
            except OSError:
                os.symlink(os.path.abspath(f), dst)
        duration = len(frames) / fps
        args = ["-framerate", f"{fps:g}", "-i", str(work / f"%06d{ext}")]
        if silent_audio:
            args += ["-f", "lavfi", "-t", f"{duration:.6f}",
                     "-i", "anullsrc=channel_layout=mono:sample_rate=16000"]
        args += ["-map", "0:v:0"] + (["-map", "1:a:0"] if silent_audio else [])
        args += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "veryfast",
                 "-crf", "12", "-pix_fmt", "yuv420p", "-r", f"{fps:g}"]
        if silent_audio:
            args += ["-c:a", "aac", "-b:a", "32k", "-shortest"]
        args += ["-movflags", "+faststart", "-f", "mp4"]
        _run_ffmpeg(args, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def cut_segment(src: Path, start: float, end: float, out: Path) -> Path:
    """Cut ``[start, end)`` seconds of ``src`` into an H.264/AAC mp4 (frame-accurate re-encode)."""
    if end <= start:
        raise RuntimeError(f"empty segment [{start}, {end}]")
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["-ss", f"{start:.3f}", "-i", str(src), "-t", f"{end - start:.3f}",
            "-map", "0:v:0", "-map", "0:a:0?", "-c:v", "libx264", "-preset", "veryfast",
            "-crf", "16", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k",
            "-movflags", "+faststart", "-f", "mp4"]
    _run_ffmpeg(args, out)
    return out
