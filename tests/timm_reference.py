"""timm's ``Lamb`` and ``Lars`` as references, loaded without executing ``timm/__init__.py``.

``import timm`` runs ``timm/__init__.py``, which imports torchvision; in an environment where
torchvision does not match torch that import fails, although ``timm/optim/lamb.py`` and
``timm/optim/lars.py`` need only torch.  ``load()`` finds the installed timm directory, puts
empty stand-in packages ``timm`` and ``timm.optim`` into ``sys.modules`` just long enough to
execute the optimizer modules (and the helper modules they import relatively) from their files,
then restores ``sys.modules`` so that a later ``import timm`` elsewhere is unaffected.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

__all__ = ["TimmOptim", "load", "timm_directory"]

# the optimizer modules and, first, the sibling modules they import (``from ._helpers import``)
_MODULES = ("_types", "_helpers", "lamb", "lars")


class TimmOptim(types.SimpleNamespace):
    """What ``load()`` returns: ``Lamb``, ``Lars`` and ``version`` (timm's installed version)."""


def timm_directory() -> Path:
    """The installed ``timm`` package directory; ``ModuleNotFoundError`` if timm is absent."""
    spec = importlib.util.find_spec("timm")  # locates the package, does not execute it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("timm is not installed", name="timm")
    return Path(next(iter(spec.submodule_search_locations)))


def _version(root: Path) -> str:
    text = (root / "version.py").read_text()
    return text.split("=", 1)[1].strip().strip("'\"") if "=" in text else "unknown"


def load() -> TimmOptim:
    """Load ``timm.optim.lamb`` and ``timm.optim.lars`` from the installed timm's files."""
    root = timm_directory()
    names = ["timm", "timm.optim", *(f"timm.optim.{m}" for m in _MODULES)]
    saved = {name: sys.modules[name] for name in names if name in sys.modules}
    try:
        for package, path in (("timm", root), ("timm.optim", root / "optim")):
            stub = types.ModuleType(package)
            stub.__path__ = [str(path)]
            sys.modules[package] = stub
        loaded = {}
        for module in _MODULES:
            name = f"timm.optim.{module}"
            spec = importlib.util.spec_from_file_location(name, root / "optim" / f"{module}.py")
            loaded[module] = importlib.util.module_from_spec(spec)
            sys.modules[name] = loaded[module]
            spec.loader.exec_module(loaded[module])
    finally:
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return TimmOptim(Lamb=loaded["lamb"].Lamb, Lars=loaded["lars"].Lars, version=_version(root))
