"""The packaged sample: 32 slices (z 120-151) of the FlyEM medulla FIB-SEM volume, 250 x 250 pixels, 10 nm voxels.

``flyem_sample`` is the npe2 sample-data hook (File > Open Sample); ``load_sample_volume`` serves the CLI and demos.
The data is CC BY 3.0: the credit travels in the metadata.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from .. import DATA_CREDIT
from .readers import read_volume
from .volume import Volume

SAMPLE_FILE = "flyem_medulla_crop_z120-151.tif"
SAMPLE_NAME = "FlyEM medulla z120-151"
SAMPLE_Z_OFFSET = 120
SAMPLE_SOURCE = (
    "janelia-flyem/neuroproof_examples, training_sample1/grayscale_maps (Drosophila medulla FIB-SEM), slices 120-151"
)


def load_sample_volume() -> Volume:
    """The packaged FlyEM crop as an in-memory (32, 250, 250) uint8 :class:`Volume` with 10 nm voxels and credit."""
    ref = resources.files("napari_sparse_sem") / "data" / SAMPLE_FILE
    with resources.as_file(ref) as path:
        volume = read_volume(path, lazy=False)
    volume.name = SAMPLE_NAME
    volume.metadata.update(
        credit=DATA_CREDIT, source=SAMPLE_SOURCE, z_offset=SAMPLE_Z_OFFSET, voxel_size_nm=volume.voxel_size
    )
    return volume


def flyem_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """npe2 sample-data hook: one image layer with 10 nm scale and the data credit in its metadata."""
    volume = load_sample_volume()
    metadata = {
        "credit": DATA_CREDIT,
        "source": SAMPLE_SOURCE,
        "z_offset": SAMPLE_Z_OFFSET,
        "voxel_size_nm": volume.voxel_size,
    }
    return [(volume.data, {"name": SAMPLE_NAME, "scale": volume.voxel_size, "metadata": metadata}, "image")]
