"""The class table of the synthetic dataset: a factorial design of face × voice patterns.

Three face patterns (what the face does) cross two voice patterns (how the voice sounds) into six
emotion classes. Classes that share a face pattern differ only in the audio track; classes that
share a voice pattern differ only in the video track. Valence follows the face, arousal follows
the voice, so valence needs the video, arousal needs the audio and the category needs both.

The face patterns are posed at full intensity, as actors do in RAVDESS. At half these values (and
with each actor's own wall, clothes and light) they moved the face crops 1/80 as much as the
speakers' identity did, against a quarter for the voice patterns in the filterbank, and the
fine-tuned models never learned them; now 1/11 (see ``identity.py``).

Emotion codes reuse RAVDESS's numbering (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry,
08 surprised); code 00 marks the unlabeled pretraining pool.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations

__all__ = [
    "EmotionClass",
    "FacePattern",
    "VoicePattern",
    "FACE_PATTERNS",
    "VOICE_PATTERNS",
    "CLASSES",
    "POOL_CODE",
    "class_table",
    "audio_only_pairs",
    "video_only_pairs",
]

POOL_CODE = 0


@dataclass(frozen=True)
class FacePattern:
    """Apex expression of a face pattern; every value is in face-size units (see ``face.py``).

    ``mouth_curve`` lifts the mouth corners (+ = smile, − = turned down); ``mouth_width`` scales
    the mouth; ``mouth_open`` is a resting jaw drop added to articulation; ``brow_raise`` moves the
    brows up (+) or down (−); ``brow_knit`` pulls their inner ends down and together; ``eye_open``
    scales the eyelid opening; ``cheek`` raises the cheeks and deepens the nasolabial folds;
    ``head_pitch``/``head_roll`` are the head's apex offset (share of face height / degrees) and
    ``sway`` the amplitude of its slow motion.
    """

    name: str
    description: str
    mouth_curve: float
    mouth_width: float
    mouth_open: float
    brow_raise: float
    brow_knit: float
    eye_open: float
    cheek: float
    head_pitch: float
    head_roll: float
    sway: float


@dataclass(frozen=True)
class VoicePattern:
    """How a voice pattern shifts the speaker's own voice.

    ``pitch`` multiplies the speaker's mean F0; ``pitch_range`` is the accent size in semitones;
    ``declination`` the F0 fall over a phrase in semitones; ``final_rise`` a phrase-final rise in
    semitones; ``tempo`` multiplies the syllable rate (kept small on purpose: the mouth follows the
    syllables, and a large tempo change would leak the voice pattern into the video);
    ``level_db`` the speech level relative to the speaker's; ``tilt`` the source's spectral slope
    (harmonic k has amplitude k**-tilt: lower = brighter, tenser voice); ``breath`` the share of
    aspiration noise; ``jitter`` the random F0 perturbation.
    """

    name: str
    description: str
    pitch: float
    pitch_range: float
    declination: float
    final_rise: float
    tempo: float
    level_db: float
    tilt: float
    breath: float
    jitter: float


FACE_PATTERNS: dict[str, FacePattern] = {
    p.name: p
    for p in (
        FacePattern(
            "relaxed",
            "still face: level brows, closed-lip resting mouth, no expression onset",
            mouth_curve=0.0, mouth_width=1.0, mouth_open=0.0, brow_raise=0.0, brow_knit=0.0,
            eye_open=1.0, cheek=0.0, head_pitch=0.0, head_roll=0.0, sway=0.3,
        ),
        FacePattern(
            "smile",
            "smile: mouth corners up and wider, teeth shown, raised cheeks with nasolabial "
            "folds, narrowed eyes, brows up, head tilts sideways",
            mouth_curve=0.26, mouth_width=1.5, mouth_open=0.14, brow_raise=0.06, brow_knit=0.0,
            eye_open=0.56, cheek=1.0, head_pitch=-0.02, head_roll=4.0, sway=0.4,
        ),
        FacePattern(
            "frown",
            "frown: brows lowered and knitted with vertical furrows between them, mouth corners "
            "turned down and narrower, head lowered",
            mouth_curve=-0.16, mouth_width=0.76, mouth_open=0.0, brow_raise=-0.1, brow_knit=2.0,
            eye_open=0.8, cheek=0.0, head_pitch=0.05, head_roll=0.0, sway=0.4,
        ),
    )
}

VOICE_PATTERNS: dict[str, VoicePattern] = {
    p.name: p
    for p in (
        VoicePattern(
            "subdued",
            "low arousal: lower, flat and falling pitch, soft, breathy and dark voice, "
            "slightly slower",
            pitch=0.90, pitch_range=1.0, declination=3.0, final_rise=0.0, tempo=0.95,
            level_db=-5.0, tilt=1.9, breath=0.22, jitter=0.004,
        ),
        VoicePattern(
            "aroused",
            "high arousal: higher pitch with wide accents and a final rise, loud, tense and "
            "bright voice, slightly faster",
            pitch=1.38, pitch_range=4.5, declination=1.0, final_rise=3.0, tempo=1.05,
            level_db=+5.0, tilt=1.05, breath=0.06, jitter=0.012,
        ),
    )
}


@dataclass(frozen=True)
class EmotionClass:
    """One labeled class: its RAVDESS-style code, name, valence/arousal and the two patterns."""

    code: int
    name: str
    valence: float
    arousal: float
    face_pattern: str
    voice_pattern: str

    @property
    def face(self) -> FacePattern:
        return FACE_PATTERNS[self.face_pattern]

    @property
    def voice(self) -> VoicePattern:
        return VOICE_PATTERNS[self.voice_pattern]


CLASSES: tuple[EmotionClass, ...] = (
    EmotionClass(1, "neutral", 0.0, -0.2, "relaxed", "subdued"),
    EmotionClass(2, "calm", 0.4, -0.6, "smile", "subdued"),
    EmotionClass(3, "happy", 0.8, 0.5, "smile", "aroused"),
    EmotionClass(4, "sad", -0.7, -0.5, "frown", "subdued"),
    EmotionClass(5, "angry", -0.6, 0.8, "frown", "aroused"),
    EmotionClass(8, "surprised", 0.2, 0.8, "relaxed", "aroused"),
)


def class_table() -> list[dict]:
    """The class table as JSON-ready dicts (index = label index used downstream)."""
    return [{"index": i, **asdict(c)} for i, c in enumerate(CLASSES)]


def audio_only_pairs() -> list[tuple[str, str]]:
    """Class pairs with the same face pattern: separable only by listening."""
    return [(a.name, b.name) for a, b in combinations(CLASSES, 2)
            if a.face_pattern == b.face_pattern]


def video_only_pairs() -> list[tuple[str, str]]:
    """Class pairs with the same voice pattern: separable only by looking."""
    return [(a.name, b.name) for a, b in combinations(CLASSES, 2)
            if a.voice_pattern == b.voice_pattern]
