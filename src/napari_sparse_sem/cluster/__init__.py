"""Block-wise runs on ``dask.distributed`` for volumes beyond one process (issue #17): connect to a cluster
(:mod:`.connect`), cut the volume into blocks (:mod:`napari_sparse_sem.recon.blocks`), run the ordinary method code per
block on the workers (:mod:`.tasks`), drive them with the progress/cancel protocol (:mod:`.run`) and keep a resumable
record of finished blocks in the OME-Zarr output (:mod:`.store`, :mod:`.output`). Services: :mod:`.reconstruct` and
:mod:`.simulate`. ``distributed`` is imported only when a run starts.
"""
