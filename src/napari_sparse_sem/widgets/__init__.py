"""napari dock widgets (the only place with Qt and napari): sparse acquisition, reconstruction, mask comparison.

Each widget only collects parameters, starts a core job in a worker thread and shows the results as layers; the
numbers come from the same core functions the CLI and the Python API use.
"""
