"""Parts of the style world: objects, drawers and photos.

The public entry is ``sbir_core.data.synthetic``; the pixel-space baseline that measures the
world's difficulty is a method, ``sbir_core.models.pixel_nn``.
"""
