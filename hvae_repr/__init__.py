"""hvae_repr: hierarchical VAEs with one rate weight (beta) per latent layer.

Implements Xiao & Bamler, "Trading Information between Latents in Hierarchical
Variational Autoencoders" (ICLR 2023). Layers are numbered from the data up:
z1 is next to x, zL is the top layer.
"""
import os

# Must happen before TensorFlow is imported anywhere: oneDNN kernels are off by
# default on AMD CPUs and make the conv step about 1.3x faster here.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
