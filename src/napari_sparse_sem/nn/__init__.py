"""Shared torch building blocks (imported lazily: nothing here is loaded by ``import napari_sparse_sem``)."""
