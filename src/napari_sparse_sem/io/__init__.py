"""Reading and writing volumes, masks and reconstructions (tif, folders of slices, zarr/OME-Zarr, mrc, h5).

``read_volume`` gives a lazy (z, y, x) :class:`Volume` with voxel size in nm, or raises ``VolumeReadError`` (a
``ValueError``) for a file that is corrupt, truncated or implausible; ``write_volume`` saves ImageJ TIFF or OME-Zarr
with the parameters that made the data, which ``read_metadata`` recovers.
"""

from .readers import SUPPORTED_FORMATS, VolumeReadError, detect_format, read_metadata, read_volume
from .volume import Volume
from .writers import jsonable, write_volume

__all__ = [
    "SUPPORTED_FORMATS",
    "Volume",
    "VolumeReadError",
    "detect_format",
    "jsonable",
    "read_metadata",
    "read_volume",
    "write_volume",
]
