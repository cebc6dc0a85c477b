"""mmtok: a native-multimodal token model for music and audio description.

`import mmtok` stays light: the tokenizer's names are loaded on first use, and nothing here
imports wandb, webdataset or xformers (training and streaming import those themselves).
"""

__version__ = "0.1.0"

_LAZY = {
    "MultimodalTokenizer": "mmtok.tokenizer.multimodal",
    "AudioCodes": "mmtok.tokenizer.codes",
    "VocabLayout": "mmtok.tokenizer.layout",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmtok' has no attribute {name!r}")
