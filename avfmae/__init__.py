"""AVF-MAE++ audio-visual masked autoencoders as a reproducible experiment pipeline.

``import avfmae`` makes the timm names ``avfmae_<scale>`` / ``avfmae_pretrain_<scale>`` available
to ``timm.create_model`` without importing torch or timm itself: the models register when timm
is imported (now, if it already is).
"""

from __future__ import annotations

import importlib.util
import sys

TYPE_CHECKING = False  # typing itself would cost `import avfmae` more than everything else
if TYPE_CHECKING:
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__version__ = "0.1.0"

__all__ = ["predict"]


def __getattr__(name: str):
    # lazy: `import avfmae` stays light for preprocessing workers and the CLI
    if name == "predict":
        from avfmae.eval.predict import predict

        return predict
    raise AttributeError(f"module 'avfmae' has no attribute {name!r}")


def _register_with_timm() -> None:
    import avfmae.models.timm_entries  # noqa: F401  (registers the names on import)


# The import protocol is duck-typed: importlib.abc would cost `import avfmae` ~10 ms.
class _RegisteringLoader:
    """timm's own loader, then our registration once timm is complete."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # timm's own loader stays the module's for resource readers and introspection
        module.__loader__ = module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _register_with_timm()


class _TimmImportHook:
    """Registers our models right after the first ``import timm``, then steps aside."""

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> ModuleSpec | None:
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("timm")
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


if "timm" in sys.modules:
    _register_with_timm()
elif not any(isinstance(f, _TimmImportHook) for f in sys.meta_path):
    sys.meta_path.insert(0, _TimmImportHook())
