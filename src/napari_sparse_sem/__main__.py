"""``python -m napari_sparse_sem``: the ``sparse-sem`` command line without its console script."""

from napari_sparse_sem.cli import main

main()
