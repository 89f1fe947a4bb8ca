"""Reconstruction: fill the unscanned pixels of a sparse acquisition (classical methods here; DIP and GAN later)."""

from napari_sparse_sem.recon.base import FitPreview, Reconstructor, available_methods, create, method_class, register
from napari_sparse_sem.recon.volume import SliceDone, reconstruct_volume

__all__ = [
    "FitPreview",
    "Reconstructor",
    "SliceDone",
    "available_methods",
    "create",
    "method_class",
    "reconstruct_volume",
    "register",
]
