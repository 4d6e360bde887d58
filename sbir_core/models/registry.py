"""The method registry: name -> "module:builder"; each builder takes the method's options and returns a Method.

Kept apart from ``sbir_core.models.base`` on purpose: ``MethodSpec.sources()`` fingerprints base (its
code shapes every method's training), and adding a method here must not retrain every stored run of
the others. A new method adds one line (or calls ``sbir_core.models.base.register`` at run time).
"""

METHODS: dict[str, str] = {
    "triplet_sn": "sbir_core.models.triplet:build_triplet",
    "pixel_nn": "sbir_core.models.pixel_nn:PixelNN",
    "stylemeup": "sbir_core.models.stylemeup:build_stylemeup",
    "with_style": "sbir_core.models.with_style:build_with_style",
    "hierarchy": "sbir_core.models.hierarchy:build_hierarchy",
    "adaptive_fgsbir": "sbir_core.models.adaptive:build_adaptive",
}
