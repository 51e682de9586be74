"""``params.yaml`` → typed, validated configuration.

Every knob of the pipeline lives in one dataclass field declared with :func:`knob`, grouped by
stage. :func:`load_params` checks the whole file before any compute: an unknown key, a wrong type
or an out-of-range value raises :class:`ConfigError` naming the dotted key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from avfmae.errors import UserError

__all__ = [
    "ConfigError",
    "knob",
    "load_params",
    "parse_section",
    "Params",
    "DataConfig",
    "SyntheticConfig",
    "PreprocessConfig",
    "ModelConfig",
    "PretrainConfig",
    "FinetuneConfig",
    "StageConfig",
    "EvalConfig",
]

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(UserError, ValueError):
    """A params.yaml problem; the message names the dotted key and what is allowed."""


def knob(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    help: str = "",
) -> Any:
    """Declare a config field with its default, inclusive bounds and a one-line description.

    ``lo_open`` makes the lower bound exclusive (e.g. a learning rate must be > 0).
    Allowed string values are declared with ``Literal[...]`` in the field's type.
    """
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda: dataclasses.replace(default), metadata=meta)
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticConfig:
    """The embedded synthetic dataset (see ``data/README.md`` for what each class looks like)."""

    seed: int = knob(0, lo=0, help="generator seed; same seed → byte-identical dataset")
    n_speakers: int = knob(24, lo=2, hi=98, help="labeled identities (split into folds)")
    n_pool_speakers: int = knob(
        8, lo=0, hi=97, help="extra identities of the unlabeled pool (actors in all ≤ 99)"
    )
    clips_per_class: int = knob(1, lo=1, hi=50, help="labeled clips per speaker and class")
    pool_clips_per_speaker: int = knob(6, lo=0, hi=198, help="unlabeled clips per pool speaker")
    duration_s: float = knob(3.0, lo=1.0, hi=20.0, help="clip length in seconds")
    fps: int = knob(25, lo=10, hi=60, help="video frame rate")
    frame_size: int = knob(224, lo=96, hi=1024, help="rendered frame side in pixels (even)")
    sample_rate: int = knob(16000, lo=8000, hi=48000, help="audio sample rate of the MP4 track")


@dataclass(frozen=True)
class DataConfig:
    """Which datasets are used and where they live."""

    datasets: list[str] = knob(["synthetic"], help="enabled labeled datasets (registry names)")
    pretrain_pool: list[str] = knob(["synthetic"], help="datasets whose clips feed pretraining")
    s1_pool: list[str] = knob(
        ["synthetic4"], help="labeled datasets whose training parts join s1 of each target of their family, "
                 "without being fine-tuned or evaluated themselves")
    root: str = knob("data", help="root of raw/ interim/ processed/")
    licensed_root: str = knob(
        "data/licensed", help="where user-placed copies of license-gated datasets live"
    )
    folds: list[int] = knob(
        [1, 2, 3], help="1-based folds to run for every enabled dataset (must exist in each)"
    )
    val_fraction: float = knob(
        0.2, lo=0.0, hi=0.5, lo_open=True,
        help="share of training subjects held out for model selection",
    )
    folder_path: str = knob(
        "", help="directory of face videos for the `folder` pool; empty = <licensed_root>/folder"
    )
    mirrors: dict[str, str] = knob(
        {}, help="dataset → base URL replacing its public download host (mirror, local server)"
    )
    synthetic: SyntheticConfig = knob(SyntheticConfig())


@dataclass(frozen=True)
class PreprocessConfig:
    """Face tracking/cropping and audio extraction into the clip store."""

    face_size: int = knob(160, lo=32, hi=512, help="side of the square face crop in pixels")
    margin: float = knob(0.25, lo=0.0, hi=1.0, help="crop margin around the box, share of side")
    detect_every: int = knob(5, lo=1, hi=50, help="run the detector every k frames")
    align: bool = knob(False, help="rotate so the eyes are level")
    min_face_rate: float = knob(0.5, lo=0.0, hi=1.0, help="reject clips with fewer detections")
    min_audio_s: float = knob(0.5, lo=0.0, hi=10.0, help="reject clips with shorter audio")
    max_reject_fraction: float = knob(0.1, lo=0.0, hi=1.0, help="fail when more are rejected")
    sample_rate: int = knob(16000, lo=8000, hi=48000, help="WAV sample rate")
    fps: int = knob(25, lo=5, hi=60, help="frame rate of the face clips")
    crf: int = knob(18, lo=0, hi=51, help="x264 quality of the face clips")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = knob(
        "ultrafast", help="x264 speed preset of the face clips (ultrafast also decodes fastest)"
    )
    min_face: float = knob(
        0.15, lo=0.02, hi=1.0, help="smallest face searched for, share of the frame's short side"
    )
    workers: int = knob(0, lo=0, hi=256, help="worker processes; 0 = all cores")


@dataclass(frozen=True)
class ModelConfig:
    """Model scale from the registry plus per-field overrides."""

    scale: str = knob("tiny", help="registered scale: tiny, small, base, large, huge")
    overrides: dict[str, Any] = knob({}, help="scale fields to override, e.g. {depth: 4}")
    reference_compatible: bool = knob(False, help="reproduce the published flaws (SPEC §12)")


@dataclass(frozen=True)
class PretrainConfig:
    """Self-supervised audio-visual pretraining (SPEC §3, §6)."""

    epochs: int = knob(20, lo=1, hi=10000)
    warmup_epochs: float = knob(1.0, lo=0.0, hi=1000.0)
    batch_size: int = knob(8, lo=1, hi=4096, help="per-process batch size")
    base_lr: float = knob(4e-2, lo=0.0, lo_open=True, help="scaled by total batch / 256")
    min_lr: float = knob(1e-6, lo=0.0)
    weight_decay: float = knob(0.05, lo=0.0, hi=1.0)
    betas: list[float] = knob([0.9, 0.95])
    clip_grad: float = knob(0.0, lo=0.0, help="max grad norm; 0 = off")
    mask_ratio_video: float = knob(0.9, lo=0.0, hi=1.0, lo_open=True)
    mask_ratio_audio: float = knob(0.8125, lo=0.0, hi=1.0, lo_open=True)
    decoder_mask_ratio_video: float = knob(0.5, lo=0.0, hi=1.0)
    decoder_mask_ratio_audio: float = knob(0.5, lo=0.0, hi=1.0)
    window_masking: bool = knob(True, help="equal visible count per LG region (SPEC §12.3)")
    contrastive_weight: float = knob(0.0025, lo=0.0)
    contrastive_temperature: float = knob(0.07, lo=0.0, lo_open=True)
    gather_negatives: bool = knob(True, help="all-gather contrastive negatives across ranks")
    amp: Literal["auto", "off", "bf16", "fp16"] = knob("auto")
    compile: bool = knob(False)
    checkpoint_every_steps: int = knob(50, lo=1)
    num_workers: int = knob(2, lo=0, hi=64)
    seed: int = knob(0, lo=0)


@dataclass(frozen=True)
class StageConfig:
    """One progressive-semantics-injection fine-tuning stage (s1, s2 or s3)."""

    epochs: int = knob(10, lo=1, hi=10000)
    warmup_epochs: float = knob(1.0, lo=0.0, hi=1000.0)
    batch_size: int = knob(8, lo=1, hi=4096)
    base_lr: float = knob(1e-3, lo=0.0, lo_open=True, help="scaled by total batch / 256")
    min_lr: float = knob(1e-6, lo=0.0)
    weight_decay: float = knob(0.05, lo=0.0, hi=1.0)
    layer_decay: float = knob(0.75, lo=0.0, hi=1.0, lo_open=True)
    drop_path: float = knob(0.1, lo=0.0, hi=1.0)
    mixup: float = knob(0.0, lo=0.0, help="mixup alpha; 0 = off (published recipe: 0.8)")
    cutmix: float = knob(0.0, lo=0.0, help="cutmix alpha; 0 = off (published recipe: 1.0)")
    label_smoothing: float = knob(0.1, lo=0.0, hi=1.0)
    rand_augment: str = knob("", help="RandAugment spec (timm style), '' = off "
                                      "(published recipe: rand-m7-n4-mstd0.5-inc1)")
    min_crop_area: float = knob(1.0, lo=0.0, hi=1.0, lo_open=True,
                                help="smallest area share of the random resized crop, 1 = no "
                                     "crop (published recipe: 0.08)")
    reprob: float = knob(0.0, lo=0.0, hi=1.0,
                         help="random erasing probability per frame (published recipe: 0.25)")
    freeze_encoders: bool = knob(False, help="train only fusion and head")


@dataclass(frozen=True)
class FinetuneConfig:
    """Three-stage progressive fine-tuning per dataset and fold."""

    stages: list[Literal["s1", "s2", "s3"]] = knob(["s1", "s2", "s3"])
    init: Literal["pretrained", "random"] = knob("pretrained")
    modality: Literal["av", "video", "audio"] = knob("av")
    mix_audio: bool = knob(True, help="mixup/cutmix both modalities (SPEC §12.12)")
    regression_loss: Literal["mse", "ccc"] = knob("ccc")
    head_init_scale: float = knob(
        1.0, lo=0.0, lo_open=True,
        help="multiplies fresh heads' trunc-normal(0.02) weights (published: 0.001, which "
             "their AV head ignored)",
    )
    amp: Literal["auto", "off", "bf16", "fp16"] = knob("auto")
    num_workers: int = knob(2, lo=0, hi=64)
    seed: int = knob(0, lo=0)
    s1: StageConfig = knob(StageConfig(epochs=20, base_lr=3e-2, layer_decay=1.0))
    s2: StageConfig = knob(StageConfig(epochs=3, base_lr=3e-2, freeze_encoders=True))
    s3: StageConfig = knob(StageConfig(epochs=6, base_lr=1e-2))


@dataclass(frozen=True)
class EvalConfig:
    """Deterministic test-time protocol."""

    num_windows: int = knob(2, lo=1, hi=32, help="temporal windows averaged per clip")
    batch_size: int = knob(8, lo=1, hi=4096)


@dataclass(frozen=True)
class Params:
    """The whole of ``params.yaml``."""

    data: DataConfig = knob(DataConfig())
    preprocess: PreprocessConfig = knob(PreprocessConfig())
    model: ModelConfig = knob(ModelConfig())
    pretrain: PretrainConfig = knob(PretrainConfig())
    finetune: FinetuneConfig = knob(FinetuneConfig())
    eval: EvalConfig = knob(EvalConfig())


# ----------------------------------------------------------------------------------------------
# Parsing and validation
# ----------------------------------------------------------------------------------------------


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``params.yaml``; raises :class:`ConfigError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file (run from the repository root)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return params_from_dict(raw)


def parse_section(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from ``raw`` (a mapping), validating every field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'params'}: expected a mapping, got {_kind(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{_join(where, unknown[0])}: unknown key; allowed keys are {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, raw_value in raw.items():
        key = _join(where, name)
        values[name] = _check_range(fields[name], _coerce(hints[name], raw_value, key), key)
    return _with_nested_defaults(cls, values)


def _with_nested_defaults(cls: type, values: dict[str, Any]) -> Any:
    """Keep a nested section's own defaults (e.g. ``s2``) for keys the file does not set."""
    defaults = cls()
    for f in dataclasses.fields(cls):
        value = values.get(f.name)
        if isinstance(value, _Partial):
            values[f.name] = dataclasses.replace(getattr(defaults, f.name), **value.values)
    return cls(**values)


@dataclass
class _Partial:
    values: dict[str, Any]


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        parsed = parse_section(tp, value, key)
        return _Partial({k: getattr(parsed, k) for k in value})
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_kind(value)}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_kind(value)}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_kind(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_kind(value)}")
        return value
    if tp is float:
        if isinstance(value, str):
            value = _yaml11_float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {_kind(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_kind(value)}")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")


def _yaml11_float(text: str) -> float | str:
    """YAML 1.1 reads ``1e-6`` (no dot) as a string; take it as the number it means."""
    try:
        return float(text) if any(c.isdigit() for c in text) else text
    except ValueError:
        return text


def _check_range(f: dataclasses.Field, value: Any, key: str) -> Any:
    lo, hi, lo_open = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("lo_open")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    below = value <= lo if (lo is not None and lo_open) else (lo is not None and value < lo)
    if below or (hi is not None and value > hi):
        left = "(" if lo_open else "["
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ConfigError(f"{key}: {value!r} is out of range; allowed {left}{lo_s}, {hi_s}]")
    return value


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


# ----------------------------------------------------------------------------------------------
# JSON schema (Snakemake validates its config against it; generated from the dataclasses)
# ----------------------------------------------------------------------------------------------


def json_schema(cls: type | None = None) -> dict[str, Any]:
    """JSON schema of ``params.yaml`` derived from the config dataclasses."""
    cls = cls or Params
    hints = typing.get_type_hints(cls)
    props = {}
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name])
        if f.metadata.get("help"):
            prop["description"] = f.metadata["help"]
        lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
        if lo is not None:
            prop["exclusiveMinimum" if f.metadata.get("lo_open") else "minimum"] = lo
        if hi is not None:
            prop["maximum"] = hi
        props[f.name] = prop
    schema = {"type": "object", "properties": props, "additionalProperties": False}
    if cls is Params:
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return schema


def _type_schema(tp: Any) -> dict[str, Any]:
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        return json_schema(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is dict:
        return {"type": "object"}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return {"type": simple[tp]} if tp in simple else {}


def params_from_dict(raw: dict[str, Any]) -> Params:
    """Validate an already-loaded params mapping (e.g. Snakemake's ``config``)."""
    params = parse_section(Params, raw, "")
    _check_across_keys(params)
    return params


def _check_across_keys(params: Params) -> None:
    """Rules that involve more than one key or the dataset registry."""
    from avfmae.data import registry
    from avfmae.data.video_transforms import parse_rand_augment
    from avfmae.masking import validate_ratios

    validate_ratios(params.pretrain)
    known = registry.names()
    for key in ("datasets", "pretrain_pool", "s1_pool"):
        for i, name in enumerate(getattr(params.data, key)):
            if name not in known:
                raise ConfigError(f"data.{key}[{i}]: unknown dataset {name!r}; registry names "
                                  f"are {', '.join(known)}")
    for key, i, name in [*(("datasets", i, n) for i, n in enumerate(params.data.datasets)),
                         *(("s1_pool", i, n) for i, n in enumerate(params.data.s1_pool))]:
        spec = registry.get(name)
        if spec.is_pool:
            raise ConfigError(f"data.{key}[{i}]: {name!r} is an unlabeled pretraining pool; "
                              "list it under data.pretrain_pool")
        n = spec.protocol.n_folds
        bad = [k for k in params.data.folds if k < 1 or (n is not None and k > n)]
        if bad:
            raise ConfigError(f"data.folds: fold {bad[0]} does not exist for {name} "
                              f"(folds 1..{n})")
    if not params.data.folds:
        raise ConfigError("data.folds: list at least one fold, e.g. [1]")
    if not params.finetune.stages or len(set(params.finetune.stages)) != len(
            params.finetune.stages) or list(params.finetune.stages) != sorted(
            params.finetune.stages):
        raise ConfigError(f"finetune.stages: {params.finetune.stages} must be a non-empty, "
                          "ordered subset of [s1, s2, s3]")
    for name in ("s1", "s2", "s3"):
        spec = getattr(params.finetune, name).rand_augment
        if not spec:
            continue
        try:
            parse_rand_augment(spec)
        except ValueError as err:
            raise ConfigError(f"finetune.{name}.rand_augment: {err}") from None


def explain(params: Params) -> str:
    """Every key with its current value, allowed range and meaning, one line each."""
    lines: list[str] = []
    _explain_section(params, "", lines)
    return "\n".join(lines)


def _explain_section(section: Any, where: str, lines: list[str]) -> None:
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        key, value = _join(where, f.name), getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            _explain_section(value, key, lines)
            continue
        allowed = _allowed(hints[f.name], f.metadata)
        help_ = f.metadata.get("help", "")
        lines.append(f"{key} = {value!r}" + (f"  allowed {allowed}" if allowed else "")
                     + (f"  {help_}" if help_ else ""))


def _allowed(tp: Any, meta: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(map(str, get_args(tp)))
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None and hi is None:
        return ""
    left = "(" if meta.get("lo_open") else "["
    return f"{left}{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"
