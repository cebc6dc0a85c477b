"""mmtok: a native-multimodal token model for music and audio description.

`import mmtok` stays light: the tokenizer's names are loaded on first use, and nothing here
imports torch, wandb, webdataset or xformers. Modules that moved say where they went when an
old import path is used (`MOVED`).
"""

import importlib
import importlib.abc
import sys

__version__ = "0.1.0"

_LAZY = {
    "MultimodalTokenizer": "mmtok.tokenizer.multimodal",
    "AudioCodes": "mmtok.tokenizer.codes",
    "VocabLayout": "mmtok.tokenizer.layout",
}

# Old module path -> where its contents live now.
MOVED = {
    "mmtok.training.checkpoint": "mmtok.checkpoint",
    "mmtok.training.optim": "mmtok.optim.optimizer",
    "mmtok.training.schedule": "mmtok.optim.schedule",
    "mmtok.tokenizer.codec_fit": "mmtok.codec (fit: fit_codec, PRESETS; audio: find_audio, "
    "load_training_audio; kmeans: kmeans_encodec_repository; losses: MelLoss, Balancer)",
    "mmtok.data.corpus": "mmtok.demo.corpus",
    "mmtok.data.captions": "mmtok.demo.captions",
    "mmtok.data.render": "mmtok.demo.render",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmtok' has no attribute {name!r}")


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Turns an import of a moved module into an error that names its new place."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            raise ModuleNotFoundError(f"{fullname} has moved: import from {MOVED[fullname]}", name=fullname)
        return None


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())
