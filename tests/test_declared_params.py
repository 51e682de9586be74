"""Declared = read: every ``params.yaml`` key a stage reads is one of the keys the stage table
(``avfmae/pipeline.py``) declares for it, so that editing any key reruns every stage whose
result it can change. Each stage runs in this process on the micro data while every attribute
read of the params sections is recorded."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from avfmae import config
from avfmae.config import Params, load_params
from avfmae.pipeline import RESULT_NEUTRAL_PARAMS, stage


def _sections(node: object, prefix: str, out: dict[int, str]) -> dict[int, str]:
    """id of every section object under ``node`` → its dotted prefix."""
    out[id(node)] = prefix
    for f in dataclasses.fields(node):  # type: ignore[arg-type]
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            _sections(value, f"{prefix}{f.name}.", out)
    return out


def _section_classes(cls: type) -> set[type]:
    nested = {t for t in typing.get_type_hints(cls).values() if dataclasses.is_dataclass(t)}
    return {cls}.union(*(_section_classes(c) for c in nested))


@contextmanager
def recording(params: Params) -> Iterator[set[str]]:
    """The dotted keys of ``params`` read inside the block."""
    paths = _sections(params, "", {})
    reads: set[str] = set()

    def spy(self, name, _get=object.__getattribute__):
        value = _get(self, name)
        prefix = paths.get(id(self))
        if (prefix is not None and name in _get(self, "__dataclass_fields__")
                and not dataclasses.is_dataclass(value)):
            reads.add(prefix + name)
        return value

    classes = _section_classes(Params)
    for cls in classes:
        cls.__getattribute__ = spy  # type: ignore[method-assign]
    try:
        yield reads
    finally:
        for cls in classes:
            del cls.__getattribute__


def _covered(key: str, declared: tuple[str, ...]) -> bool:
    return any(key == d or key.startswith(d + ".") for d in declared)


def _stage_calls() -> list[tuple[str, Callable[[Params], object]]]:
    from avfmae.data.download import download
    from avfmae.data.index import index
    from avfmae.eval.evaluate import evaluate
    from avfmae.eval.report import report
    from avfmae.preprocess import preprocess
    from avfmae.train.finetune import finetune
    from avfmae.train.pretrain import pretrain

    calls: list[tuple[str, Callable[[Params], object]]] = [
        ("download", lambda p: download("synthetic", p)),
        ("index", lambda p: index("synthetic", p)),
        ("preprocess", lambda p: preprocess("synthetic", p)),
        ("pretrain", pretrain),
    ]
    calls += [(f"finetune_{s}", lambda p, s=s: finetune(p, stage=s, dataset="synthetic", fold=1))
              for s in ("s1", "s2", "s3")]
    calls += [("evaluate", lambda p: evaluate(p, dataset="synthetic", fold=1)),
              ("report", report)]
    return calls


@pytest.mark.slow
def test_every_stage_reads_only_the_params_it_declares(micro_work: Path):
    # the processed store is rebuilt, so preprocessing reads what a real run reads
    import shutil

    shutil.rmtree("data/processed/synthetic")
    undeclared = {}
    for name, call in _stage_calls():
        params = load_params()
        with recording(params) as reads:
            call(params)
        declared = (*stage(name).params, *RESULT_NEUTRAL_PARAMS)
        extra = sorted(k for k in reads if not _covered(k, declared))
        if extra:
            undeclared[name] = extra
        assert reads, f"{name}: no params read recorded (the recorder is broken)"
    assert not undeclared, f"stages read params they do not declare: {undeclared}"


def test_the_recorder_sees_reads_of_nested_sections():
    params = Params()
    with recording(params) as reads:
        _ = params.finetune.s1.epochs, params.data.synthetic.seed, params.eval.num_windows
    assert reads == {"finetune.s1.epochs", "data.synthetic.seed", "eval.num_windows"}
    assert "__getattribute__" not in vars(config.Params)
