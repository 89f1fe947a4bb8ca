"""napari-sparse-sem: sparse-scan SEM in napari — simulate sparse scans, reconstruct them, compare mask types.

The core (io, sampling, recon, metrics) is plain numpy/scipy/torch; napari and Qt live only in ``widgets``.
"""

__version__ = "0.1.0"

DATA_CREDIT = (
    "FIB-SEM data: FlyEM project, Janelia Research Campus (neuroproof_examples), CC BY 3.0; Parag et al., PLoS ONE 2015"
)
