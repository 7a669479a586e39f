"""FreqFusion (TPAMI 2024): the fusion layer (ALPF, AHPF, offset generator), its CARAFE reassembly, the
local-similarity guided sampler and the feature-pyramid neck built from it.
"""

from .carafe import carafe
from .fpn import FreqFusionFPN
from .fusion import FreqFusion
from .sampler import LocalSimGuidedSampler, local_similarity

__all__ = ["FreqFusion", "FreqFusionFPN", "LocalSimGuidedSampler", "carafe", "local_similarity"]
