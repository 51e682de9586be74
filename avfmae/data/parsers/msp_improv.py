"""MSP-IMPROV: ``Video/session<s>/<S..>/<cond>/MSP-IMPROV-S01A-F01-P-FM01.avi``, audio under
``Audio/`` with the same names (``.wav``), and the consensus labels in ``Evaluation.txt``.

Name fields: sentence number and its target emotion (``S01A``), speaker gender and session
(``F01`` = the actress of session 1), recording condition (R read, S/P improvised, T natural
interaction), and the dyad/turn code. The clip's speaker (subject) is ``F01``/``M01``; the
session (fold) is its number. ``Evaluation.txt`` lines that name a clip are read as
``<id>.avi; <consensus letter>; A:..; V:..; D:..; N:..;`` (ids may start with ``UTD-IMPROV``):
the exact file format is our reading of the release, not a documented spec. Letters A/H/N/S are
the four classes; O (other) and X (no agreement) clips are kept as unlabeled clips.
"""

from __future__ import annotations

import re
from pathlib import Path

from avfmae.data.parsers import Clip, ParseResult
from avfmae.data.parsers._common import walk_files
from avfmae.data.registry import DatasetError, DatasetSpec

NAME = re.compile(r"(?:MSP|UTD)-IMPROV-S(\d{2})([A-Z])-([FM])(\d{2})-([A-Z])-([A-Z]{1,2}\d{2,3})",
                  re.IGNORECASE)
LETTERS = {"A": "anger", "H": "happiness", "N": "neutral", "S": "sadness"}


def key(match: re.Match) -> str:
    """Prefix-free clip key shared by audio, video and label lines."""
    s, e, g, n, c, t = match.groups()
    return f"S{s}{e}-{g}{n}-{c}-{t}".upper()


def read_evaluation(path: Path) -> dict[str, str]:
    """Clip key → consensus letter from ``Evaluation.txt``."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = NAME.search(line)
        if not m or m.start() > 2:
            continue
        fields = [f.strip() for f in line[m.end():].split(";")]
        letter = next((f for f in fields[1:] if re.fullmatch(r"[A-Z]", f)), None)
        if letter:
            out.setdefault(key(m), letter)
    return out


def parse(root: Path, spec: DatasetSpec) -> ParseResult:
    evaluation = root / "Evaluation.txt"
    if not evaluation.is_file():
        raise DatasetError(f"MSP-IMPROV labels missing: {evaluation}")
    letters = read_evaluation(evaluation)
    audio = {}
    for p in walk_files(root / "Audio", (".wav",)) if (root / "Audio").is_dir() else []:
        m = NAME.search(p.name)
        if m:
            audio[key(m)] = p
    res = ParseResult([])
    for path in walk_files(root / "Video", (".avi", ".mp4")):
        m = NAME.search(path.name)
        if not m:
            res.skip("file name not in MSP-IMPROV format")
            continue
        k = key(m)
        gender, session = m.group(3).upper(), int(m.group(4))
        letter = letters.get(k)
        if letter is None:
            res.skip("no line in Evaluation.txt: kept unlabeled")
        elif letter not in LETTERS:
            res.skip(f"consensus {letter} (not A/H/N/S): kept unlabeled")
        res.clips.append(Clip(
            path.stem, video=path, audio=audio.get(k), subject=f"{gender}{session:02d}",
            label=LETTERS.get(letter or ""), fold=session,
        ))
    if not res.clips:
        raise DatasetError(f"{root}: no MSP-IMPROV videos under Video/")
    return res
