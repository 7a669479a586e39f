"""Naive CARAFE: the reference formulation that unfolds the k x k neighbourhoods into a (B, C*k*k, H, W) tensor.

It is also the library's export path, so it lives in :mod:`freqdyn.layers.carafe`; the tests compare it with
the view-based :func:`freqdyn.layers.carafe.carafe`, an independent formulation.
"""
from freqdyn.layers.carafe import carafe_unfold as naive_carafe

__all__ = ["naive_carafe"]
