"""Offline codec fitting (`mmtok codec fit`): a small EnCodec-architecture codec trained on local audio.

    audio.py    the training audio: find, read (capped, mono, resampled), crop
    kmeans.py   codebook k-means initialisation; stand-in EnCodec weights for offline tests
    losses.py   mel L1, MS-STFT adversarial + feature matching, EnCodec's balancer
    fit.py      presets, FitConfig, `fit_codec` (the fit loop, resumable)

The fitted directory is loaded by the tokenizer (`mmtok.tokenizer.codec.load_fitted_codec`),
which knows nothing of fitting.
"""
