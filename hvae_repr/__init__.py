"""hvae_repr: hierarchical VAEs with one rate weight (beta) per latent layer.

Implements Xiao & Bamler, "Trading Information between Latents in Hierarchical
Variational Autoencoders" (ICLR 2023). Layers are numbered from the data up:
z1 is next to x, zL is the top layer.
"""
import os

# Must happen before TensorFlow is imported anywhere: oneDNN kernels are off by
# default on AMD CPUs and make the conv step about 1.3x faster here.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# TensorFlow's start-up lines stay quiet unless the user chose a log level (see hvae_repr.tf_env).
# The marker tells child processes (the sweep's points) that the level they inherit was ours.
USER_SET_TF_LOG_LEVEL = ("TF_CPP_MIN_LOG_LEVEL" in os.environ
                         and os.environ.get("HVAE_REPR_SET_TF_LOG_LEVEL") != "1")
if not USER_SET_TF_LOG_LEVEL:
    os.environ.update(TF_CPP_MIN_LOG_LEVEL="2", HVAE_REPR_SET_TF_LOG_LEVEL="1")

# Set by the project's programs (hvae_repr.cli.run) before TensorFlow loads: see hvae_repr.tf_env.
PROGRAM = False

__version__ = "0.2.0"


def __getattr__(name):
    # These import TensorFlow: load them on first use so that `import hvae_repr` stays light.
    if name in ("load_encoder", "HVAEFeatures", "HVAEEncoderLayer"):
        import importlib
        return getattr(importlib.import_module("hvae_repr.features"), name)
    raise AttributeError(f"module 'hvae_repr' has no attribute {name!r}")
