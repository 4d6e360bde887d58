"""Parts of the style world: objects, drawers, photos and a pixel-space difficulty baseline.

The public entry is ``sbir_core.data.synthetic``.
"""
