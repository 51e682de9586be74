"""The dataset registry: every benchmark of the paper, pools and synthetic, each complete."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from avfmae import pipeline
from avfmae.config import DataConfig, Params
from avfmae.data import locations, registry
from avfmae.data.parsers import load_parser
from avfmae.data.registry import DatasetError

EXPECTED = ["mafw11", "mafw43", "dfew", "mer2023", "mer2024", "cremad6", "cremad4", "msp_improv",
            "ravdess", "iemocap", "avcaffe", "werewolf_xl", "samm", "casme2", "smic", "casme3",
            "mmew", "voxceleb2", "avspeech", "folder", "synthetic", "synthetic4", "synthetic_va",
            "synthetic_valence5", "synthetic_av5", "synthetic_me"]


def test_registry_names():
    assert registry.names() == EXPECTED
    assert registry.pool_names() == ["voxceleb2", "avspeech", "folder"]
    assert len([n for n in registry.labeled_names()
                if not n.startswith("synthetic")]) == 17  # docs/model.md §7.4


@pytest.mark.parametrize("name", EXPECTED)
def test_each_entry_is_complete(name):
    s = registry.get(name)
    assert s.name == name == name.lower()
    assert callable(load_parser(s.parser))
    src = s.source
    assert src.kind in ("public", "licensed", "user", "generated") and src.obtain and src.expect
    if src.kind == "licensed":
        assert src.provider and src.url.startswith("http") and src.dir_name
    if src.kind == "public":
        assert src.fetcher in ("zenodo", "git_lfs") and src.files and src.base_urls
    if s.is_pool:
        assert s.protocol.kind == "none" and not s.labels and not s.metrics
        return
    assert s.metrics and s.protocol.description
    if s.family == "DEA":  # regression, or levels of the targets classified
        assert s.targets and (not s.labels or s.levelled)
    else:
        assert s.num_classes >= 2
        assert len(set(s.labels)) == len(s.labels)
    if s.family == "MER":
        assert s.protocol.kind == "loso" and "uf1" in s.metrics
        assert not s.has_audio or src.kind == "generated"  # the synthetic voice still plays
    if s.protocol.kind in ("subject_blocks", "groups", "official"):
        assert s.protocol.n_folds


def test_protocols_of_the_paper():
    g = registry.get
    assert (g("mafw11").protocol.n_folds, g("mafw11").num_classes) == (5, 11)
    assert (g("mafw43").protocol.n_folds, g("mafw43").num_classes) == (5, 43)
    assert (g("dfew").protocol.n_folds, g("dfew").num_classes) == (5, 7)
    assert g("cremad6").labels == ("anger", "disgust", "fear", "happiness", "neutral", "sadness")
    assert g("cremad4").num_classes == 4 and g("cremad6").expected_clips == 7438
    assert (g("ravdess").protocol.n_folds, g("ravdess").num_classes) == (6, 8)
    assert g("msp_improv").protocol.n_folds == 6 and g("iemocap").protocol.n_folds == 5
    assert g("werewolf_xl").targets == ("arousal", "valence", "dominance")
    assert g("werewolf_xl").target_columns == ("t_arousal", "t_valence", "t_dominance")
    assert g("mer2024").labels == ("worried", "happy", "neutral", "angry", "surprise", "sad")
    assert g("synthetic").protocol.n_folds == 3 and g("synthetic").targets == ("valence",
                                                                                "arousal")


def test_synthetic_variants_cover_every_task_family():
    g = registry.get
    assert g("synthetic4").family == "CEA" and set(g("synthetic4").labels) < set(
        g("synthetic").labels)
    assert g("synthetic_va").family == "DEA" and not g("synthetic_va").levelled
    assert g("synthetic_valence5").levelled and g("synthetic_valence5").num_classes == 5
    assert g("synthetic_me").family == "MER" and g("synthetic_me").protocol.kind == "loso"


def test_synthetic_labels_follow_the_generator_class_table():
    from avfmae.data.synthetic.classes import CLASSES

    assert registry.get("synthetic").labels == tuple(
        c.name for c in sorted(CLASSES, key=lambda c: c.code))


def test_unknown_name_lists_the_registry():
    with pytest.raises(DatasetError, match="unknown dataset 'ravdes'; registry names are: mafw11"):
        registry.get("ravdes")


def test_paths_follow_the_contract():
    p = dataclasses.replace(Params(), data=dataclasses.replace(
        DataConfig(), root="d", licensed_root="lic", folder_path=""))
    assert pipeline.path("download", "raw", p, ds="ravdess") == Path("d/raw/ravdess")
    assert pipeline.path("index", "index", p, ds="ravdess") == Path("d/interim/ravdess")
    assert pipeline.path("preprocess", "clips", p, ds="ravdess") == Path("d/processed/ravdess")
    assert locations.media_root("ravdess", p) == Path("d/raw/ravdess")
    assert locations.media_root("mafw43", p) == Path("lic/mafw")
    assert locations.media_root("folder", p) == Path("lic/folder")
    p2 = dataclasses.replace(p, data=dataclasses.replace(p.data, folder_path="/videos"))
    assert locations.media_root("folder", p2) == Path("/videos")


def test_describe_all_lists_every_entry():
    text = registry.describe_all()
    for name in EXPECTED:
        assert f"\n{name}: " in f"\n{text}"
    assert "obtain: sign the MAFW End User License Agreement" in text


def test_synthetic_variant_labels_and_plans():
    from avfmae.config import SyntheticConfig
    from avfmae.data.parsers.synthetic import class_label, class_levels
    from avfmae.data.synthetic import class_table
    from avfmae.data.synthetic.dataset import manifest
    from avfmae.data.synthetic.variants import VARIANTS, variant_config

    cfg = SyntheticConfig(n_speakers=6)
    four = variant_config(cfg, "synthetic4")
    assert (four.n_speakers, four.n_pool_speakers) == (3, 0) and four.seed != cfg.seed
    names = [c["name"] for c in manifest(four, VARIANTS["synthetic4"].codes)["classes"]]
    assert tuple(names) == registry.get("synthetic4").labels
    table = {c["name"]: c for c in class_table()}
    levels = registry.get("synthetic_valence5")
    # valence 0.8 (happy) is in the top fifth of [-1, 1], -0.7 (sad) in the bottom one
    assert class_levels(table["happy"], levels) == {"valence": "5"}
    assert class_levels(table["sad"], levels) == {"valence": "1"}
    assert class_levels(table["neutral"], levels) == {"valence": "3"}
    both = class_levels(table["sad"], registry.get("synthetic_av5"))
    assert both["valence"] == "1" and set(both) == {"arousal", "valence"}
    me = registry.get("synthetic_me")
    assert [class_label(table[n], me) for n in ("calm", "angry", "surprised")] == [
        "positive", "negative", "neutral"]
