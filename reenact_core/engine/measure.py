"""The measure step: DECA's E_flame codes of aligned driver crops (uses the DECA encoder only)."""
from __future__ import annotations

import numpy as np
import torch

from ..imaging import image_to_tensor
from ..measure import measure_codes
from ..models.deca import DecaEncoder


def estimate_codes(deca: DecaEncoder, crops: np.ndarray, kpt68: np.ndarray) -> torch.Tensor:
    """DECA E_flame codes of reference crops, batched (official ``calculate_shapemodel`` on the 256-px crops).

    Args:
        deca: DECA's E_flame (``LoadedModel.module`` of a ``deca`` file); it runs where its weights are, in their
            dtype.
        crops: (B, 256, 256, 3) uint8 RGB crops.
        kpt68: (B, 68, 2) landmarks ``(x, y)`` in crop pixels (frame landmarks mapped by the crops' transforms).

    Returns:
        (B, 236) float32 codes on the encoder's device.
    """
    device = next(deca.parameters()).device
    return measure_codes(deca, image_to_tensor(crops).to(device), torch.as_tensor(np.asarray(kpt68, np.float32)))
