"""Reconstruction: fill the unscanned pixels of a sparse acquisition (classical methods here; DIP and GAN later)."""

from napari_sparse_sem.recon.base import Reconstructor, available_methods, create, method_class, register

__all__ = ["Reconstructor", "available_methods", "create", "method_class", "register"]
