"""Reading and writing volumes, masks and reconstructions (tif, folders of slices, zarr/OME-Zarr, mrc, h5)."""
