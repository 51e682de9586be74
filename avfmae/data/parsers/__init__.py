"""Parsers of each dataset's own layout: publisher file naming and annotation files → clips.

A parser is ``parse(root: Path, spec: DatasetSpec) -> ParseResult``; the registry names it as
``"<module>:<function>"``. It reports what it found and nothing else: label names (not indices),
subjects, fold hints for the protocol, and media to materialise (image sequences to encode,
segments to cut). :mod:`avfmae.data.index` turns that into the manifest and the splits.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Clip", "ParseResult", "load_parser"]


@dataclass
class Clip:
    """One clip as a parser sees it.

    ``label`` is a class name of the spec's label list (``None`` = unlabeled); ``targets`` maps a
    regression target to its value (``None`` = unlabeled); ``levels`` maps each dimension of a
    levelled dataset to its level name (one of the spec's labels; ``None`` = unlabeled). ``fold``: for ``official`` protocols
    the fold whose test list names the clip (0 = training only); for ``groups`` protocols the
    group (session) number. ``frames`` (an image sequence) or ``segment`` (start and end in
    seconds of ``video``) ask the index stage to write the clip's own video file first.
    """

    clip_id: str
    video: Path | None = None
    audio: Path | None = None
    subject: str = ""
    label: str | None = None
    targets: dict[str, float] | None = None
    levels: dict[str, str] | None = None
    fold: int | None = None
    frames: list[Path] | None = None
    segment: tuple[float, float] | None = None

    @property
    def labeled(self) -> bool:
        return self.label is not None or self.targets is not None or self.levels is not None


@dataclass
class ParseResult:
    """Everything a parser found.

    ``excluded``: (name, reason) of individual clips left out (broken, missing files);
    ``skipped``: counts of files left out on purpose, by reason (e.g. video-only files);
    ``labels``: label names read from the data, for specs whose names are not fixed (MAFW-43);
    ``train_lists``: official per-fold training lists (clip ids), where the publisher gives them;
    ``subjects``: every subject the label file names, clips present or not, for subject-block
    protocols the registry pins no list for (their blocks are cut from it, so a copy with part
    of the videos keeps each subject's block).
    """

    clips: list[Clip]
    excluded: list[tuple[str, str]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    labels: tuple[str, ...] | None = None
    train_lists: dict[int, set[str]] | None = None
    subjects: tuple[str, ...] = ()

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n


def load_parser(ref: str) -> Callable:
    """Resolve a registry parser reference ``"module:function"``."""
    module, _, func = ref.partition(":")
    return getattr(importlib.import_module(f"avfmae.data.parsers.{module}"), func)
