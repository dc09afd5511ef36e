"""The napari face of psfkit: widgets, layer helpers and sample data.

Everything here may import napari, Qt and magicgui; nothing outside this package does.
"""
