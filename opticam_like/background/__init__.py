"""Background estimation: global 2-D maps of the sky and its rms.

* `DefaultBackground`: our own photutils-equivalent SExtractor-style mesh
  background (fast; the pipeline default); result `MeshBackground`. Its box
  statistics use an optional C kernel, or NumPy where it was not built (see
  `opticam_like.background.clipping`).
* `PhotutilsBackground`: a real ``photutils.background.Background2D`` with
  any photutils estimators.
* `SExtractorExactBackground`: SExtractor's own algorithm (via ``sep``).

Any callable ``bkg(data, mask=None) -> result`` with ``background``,
``background_rms``, ``background_median`` and ``background_rms_median``
fulfils the pipeline's background contract.
"""

from opticam_like.background.alternatives import (PhotutilsBackground,
                                                  SExtractorExactBackground)
from opticam_like.background.mesh import DefaultBackground, MeshBackground

__all__ = ["DefaultBackground", "MeshBackground", "PhotutilsBackground",
           "SExtractorExactBackground"]
