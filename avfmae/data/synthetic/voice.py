"""Voice-like audio: a harmonic glottal source shaped by vowel formants, spoken in syllables.

Source-filter synthesis, vectorised over 5 ms blocks: the glottal source is a sum of harmonics of
a time-varying F0 with amplitudes ``k**-tilt`` (tense voices are brighter: smaller tilt); the vocal
tract is a cascade of four resonances whose frequencies glide between the vowels of the spoken
statement and scale with the speaker's tract length. Syllables get a raised-cosine envelope,
consonants are noise bursts (plosives) or hisses (fricatives), and aspiration noise, room noise
and sometimes mains hum are added.

Emotion (the voice pattern) moves pitch level and contour, syllable rate, loudness, tilt and
breathiness; identity moves mean pitch, formant scale, rate, loudness and timbre. The mouth's
opening for the video (``jaw``) follows the same syllables: vowel openness × syllable envelope,
independent of loudness, so only timing (not level) of the speech is visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import VoicePattern
from .identity import Identity

__all__ = ["Utterance", "STATEMENTS", "synthesize"]

# vowel: (F1, F2, F3) of an adult male tract in Hz, and jaw openness 0..1
_VOWELS = {
    "a": ((730, 1090, 2440), 1.0),
    "ae": ((660, 1720, 2410), 0.85),
    "e": ((530, 1840, 2480), 0.6),
    "i": ((300, 2250, 3000), 0.3),
    "o": ((570, 840, 2410), 0.7),
    "u": ((320, 870, 2240), 0.35),
    "er": ((490, 1350, 1690), 0.5),
}
# The two RAVDESS statements as (vowel, onset consonant) syllables; "p" = plosive burst,
# "s" = fricative, "" = none. 01 "Kids are talking by the door", 02 "Dogs are sitting by the door".
STATEMENTS: dict[int, tuple[tuple[str, str], ...]] = {
    1: (("i", "p"), ("a", ""), ("o", "p"), ("i", "p"), ("a", "p"), ("er", "s"), ("o", "p")),
    2: (("o", "p"), ("a", ""), ("i", "s"), ("i", "p"), ("a", "p"), ("er", "s"), ("o", "p")),
}
# lexically stressed syllables of each statement (KIDS are TALK-ing by the DOOR): they carry
# the pitch accents, so a voice pattern's pitch level is stable from clip to clip
STRESSED: dict[int, tuple[int, ...]] = {1: (0, 2, 6), 2: (0, 2, 6)}
_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 220.0])
_F4 = 3500.0
_BLOCK_S = 0.005


@dataclass(frozen=True)
class Utterance:
    """A synthesized clip: ``audio`` (float32 samples in [-1, 1]) and ``jaw`` per video frame."""

    audio: np.ndarray
    jaw: np.ndarray
    syllables: int


def _raised_cosine(t: np.ndarray, start: float, stop: float, attack: float, release: float
                   ) -> np.ndarray:
    up = np.clip((t - start) / attack, 0, 1)
    down = np.clip((stop - t) / release, 0, 1)
    return (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down))


def _shaped_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float,
                  slope: float = 0.0) -> np.ndarray:
    """Unit-RMS noise band-limited to [lo, hi] Hz with a spectral slope in dB/octave."""
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / sr)
    hi = min(hi, 0.47 * sr)
    band = np.clip((f - lo) / (0.2 * lo + 1), 0, 1) * np.clip((hi - f) / (0.1 * hi), 0, 1)
    if slope:
        band = band * (np.maximum(f, 20.0) / 1000.0) ** (slope / 6.02)
    x = np.fft.irfft(spec * band, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _tract_gain(freq: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """|H(f)| of a cascade of resonances at ``formants`` (…, 4), unity at 0 Hz."""
    f2 = freq[..., None] ** 2
    ff = formants**2
    mag = ff / np.sqrt((ff - f2) ** 2 + (_BANDWIDTHS * freq[..., None]) ** 2)
    return np.prod(mag, axis=-1)


def synthesize(
    ident: Identity,
    voice: VoicePattern,
    statement: int,
    rng: np.random.Generator,
    n_frames: int,
    fps: int,
    sr: int,
) -> Utterance:
    """Speak ``statement`` with ``voice`` for ``n_frames / fps`` seconds at ``sr`` Hz."""
    duration = n_frames / fps
    n = int(round(duration * sr))
    syl_text = STATEMENTS[statement]
    rate = ident.rate * voice.tempo * rng.uniform(0.95, 1.05)
    stressed = STRESSED[statement]

    # --- syllable schedule: phrases of the statement separated by pauses
    sylls = []  # (start, dur, vowel, consonant, accent, phrase_pos, phrase_final)
    t = rng.uniform(0.12, 0.35)
    limit = duration - 0.1
    done = False
    while not done:
        for k, (vowel, cons) in enumerate(syl_text):
            dur = rng.uniform(0.8, 1.2) / rate * (1.25 if k == len(syl_text) - 1 else 1.0)
            if t + dur > limit:
                done = True
                break
            accent = voice.pitch_range * rng.uniform(0.75, 1.0) if k in stressed else 0.0
            sylls.append((t, dur, vowel, cons, accent, k / (len(syl_text) - 1),
                          k == len(syl_text) - 1))
            t += dur
        t += rng.uniform(0.3, 0.55)
        done = done or t >= limit

    # --- block-rate controls: F0 (semitones around the level), formants, voicing envelope
    block = max(1, int(round(sr * _BLOCK_S)))  # samples per control block
    nb = n // block + 2
    tb = np.arange(nb) * (block / sr)
    semis = np.zeros(nb)
    env = np.zeros(nb)
    jaw_b = np.zeros(nb)
    centres, targets, decl = [], [], []
    tract = ident.formant_scale * (1.0 + 0.06 * (voice.pitch > 1.0))
    for start, dur, vowel, cons, accent, pos, final in sylls:
        formants, openness = _VOWELS[vowel]
        v0 = start + (0.07 if cons == "s" else 0.03 if cons == "p" else 0.0)
        v1 = start + 0.85 * dur
        e = _raised_cosine(tb, v0, v1, 0.035, 0.06)
        env = np.maximum(env, e * (1.0 + 0.35 * (accent > 0)))
        jaw_b = np.maximum(jaw_b, openness * _raised_cosine(tb, v0 - 0.04, v1, 0.06, 0.08))
        mid = 0.5 * (v0 + v1)
        semis += accent * np.exp(-0.5 * ((tb - mid) / (0.3 * dur)) ** 2)
        decl.append(voice.declination * (0.5 - pos))
        if final and voice.final_rise:
            semis += voice.final_rise * _raised_cosine(tb, mid, start + dur + 0.1, 0.6 * dur,
                                                       0.05)
        centres.append(mid)
        targets.append(np.append(np.asarray(formants, float) * tract, _F4 * tract))
    if not sylls:  # a clip too short for one syllable: a held vowel
        centres, targets = [duration / 2], [np.append(np.array(_VOWELS["a"][0]), _F4) * tract]
        decl = [0.0]
        env = _raised_cosine(tb, 0.1, duration - 0.1, 0.05, 0.05)
        jaw_b = env.copy()
    semis += np.interp(tb, centres, decl)
    formants = np.stack([np.interp(tb, centres, [f[i] for f in targets]) for i in range(4)], -1)
    drift = np.cumsum(rng.normal(size=nb)) * 0.04
    drift -= np.linspace(drift[0], drift[-1], nb)
    semis += drift + rng.normal(size=nb) * voice.jitter * 17.3  # jitter as relative F0 change
    level = ident.f0 * voice.pitch * rng.uniform(0.97, 1.03)
    f0_b = level * 2.0 ** (semis / 12.0)

    # --- harmonic source through the tract, at sample rate
    ts = np.arange(n) / sr
    f0 = np.interp(ts, tb, f0_b)
    phase = 2 * np.pi * np.cumsum(f0) / sr + rng.uniform(0, 2 * np.pi)
    tilt = voice.tilt + ident.tilt
    n_harm = int(min(120, 0.45 * sr / f0_b.min()))
    k = np.arange(1, n_harm + 1)
    hf = f0_b[:, None] * k  # (blocks, harmonics)
    amp_b = k ** -tilt * _tract_gain(hf, formants[:, None, :])
    amp_b *= np.clip((0.45 * sr - hf) / (0.03 * sr), 0, 1)
    # harmonic amplitudes interpolated linearly within each block; sin(kφ) by complex rotation
    amp_t = np.ascontiguousarray(amp_b.T)  # (harmonics, blocks)
    ramp = np.arange(block) / block
    rot = np.exp(1j * phase)
    zk = rot.copy()
    voiced = np.zeros(n)
    for j in range(n_harm):
        a = amp_t[j]
        voiced += (a[:-1, None] + (a[1:] - a[:-1])[:, None] * ramp).ravel()[:n] * zk.imag
        zk *= rot
    env_s = np.interp(ts, tb, env)
    speech = voiced * env_s
    voiced_rms = np.sqrt(np.sum(speech**2) / max(np.sum(env_s**2), 1e-9)) + 1e-12
    speech /= voiced_rms

    # --- aspiration, consonants
    breath = max(0.0, voice.breath + ident.breath)
    speech += breath * 0.7 * env_s * _shaped_noise(rng, n, sr, 300, 6000, slope=-6)
    hiss = _shaped_noise(rng, n, sr, 3500, 7500)
    burst = _shaped_noise(rng, n, sr, 800, 6000, slope=-2)
    cons_env = np.zeros(n)
    burst_env = np.zeros(n)
    for start, _, _, cons, _, _, _ in sylls:
        if cons == "s":
            cons_env = np.maximum(cons_env, 0.35 * _raised_cosine(ts, start, start + 0.085,
                                                                  0.02, 0.02))
        elif cons == "p":
            burst_env = np.maximum(burst_env, 0.8 * np.exp(-np.clip(ts - start - 0.02, 0, None)
                                                           / 0.008) * (ts >= start + 0.02))
    speech += hiss * cons_env + burst * burst_env

    # --- loudness, room noise, hum
    level_db = -24.0 + voice.level_db + ident.level_db + rng.uniform(-1.0, 1.0)
    audio = speech * 10 ** (level_db / 20)
    noise_db = rng.uniform(-54.0, -44.0)
    audio += 10 ** (noise_db / 20) * _shaped_noise(rng, n, sr, 30, 7000, slope=-3)
    if rng.random() < 0.3:
        hum = rng.choice([50.0, 60.0])
        audio += 10 ** (rng.uniform(-58, -50) / 20) * np.sin(2 * np.pi * hum * ts)
    audio = 0.98 * np.tanh(audio / 0.98)

    # --- mouth opening at the video frame times (the lips lead the sound by ~30 ms)
    frame_t = (np.arange(n_frames) + 0.5) / fps + 0.03
    jaw = np.interp(frame_t, tb, jaw_b)
    return Utterance(audio=audio.astype(np.float32), jaw=jaw.astype(np.float32),
                     syllables=len(sylls))
