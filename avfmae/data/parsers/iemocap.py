"""IEMOCAP (``IEMOCAP_full_release``): per session ``Session<s>/dialog/EmoEvaluation/<dialog>.txt``
(turn lines ``[start - end]<TAB><utterance><TAB><emotion><TAB>[V, A, D]``), dialog videos
``Session<s>/dialog/avi/DivX/<dialog>.avi`` and utterance audio
``Session<s>/sentences/wav/<dialog>/<utterance>.wav``.

Four classes: ang → anger, hap and exc → happiness, neu → neutral, sad → sadness (the usual
5,531-utterance set); other utterances are left out (not cut). Each utterance's video is cut from
its dialog AVI at index time (the AVI shows both actors); its audio is the official utterance
WAV. The speaker (subject) is ``Ses01F``/``Ses01M`` from the utterance id; the fold is the session.
"""

from __future__ import annotations

import re
from pathlib import Path

from avfmae.data.parsers import Clip, ParseResult
from avfmae.data.parsers._common import hidden
from avfmae.data.registry import DatasetError, DatasetSpec

TURN = re.compile(r"^\[(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\]\s+(\S+)\s+(\S+)\s+\[")
EMOTIONS = {"ang": "anger", "hap": "happiness", "exc": "happiness", "neu": "neutral",
            "sad": "sadness"}


def parse(root: Path, spec: DatasetSpec) -> ParseResult:
    res = ParseResult([])
    sessions = sorted(p for p in root.glob("Session*") if p.is_dir() and p.name[7:].isdigit())
    if not sessions:
        raise DatasetError(f"{root}: no Session<N>/ folders (IEMOCAP_full_release layout)")
    for sdir in sessions:
        session = int(sdir.name[7:])
        for ann in sorted((sdir / "dialog" / "EmoEvaluation").glob("*.txt")):
            if hidden(ann.name):
                continue
            dialog = ann.stem
            video = sdir / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
            for line in ann.read_text(encoding="utf-8", errors="replace").splitlines():
                m = TURN.match(line.strip())
                if not m:
                    continue
                start, end, utt, emo = float(m[1]), float(m[2]), m[3], m[4]
                if emo not in EMOTIONS:
                    res.skip(f"emotion {emo!r} outside the 4-class set (not cut)")
                    continue
                if not video.is_file():
                    res.excluded.append((utt, f"dialog video missing: {video}"))
                    continue
                wav = sdir / "sentences" / "wav" / dialog / f"{utt}.wav"
                speaker = utt.rsplit("_", 1)[-1][:1].upper()
                res.clips.append(Clip(
                    utt, video=video, audio=wav if wav.is_file() else None,
                    subject=f"Ses{session:02d}{speaker}", label=EMOTIONS[emo], fold=session,
                    segment=(start, end),
                ))
    if not res.clips:
        raise DatasetError(f"{root}: no 4-class utterances found in Session*/dialog/EmoEvaluation")
    return res
