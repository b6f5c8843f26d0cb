"""BatchNorm folding (reenact_core.models.folding): the folded network computes what the unfolded one does."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from reenact_core.models.folding import fold_batch_norms
from test_encoders import TINY_CONFIGS, _randomise

# |folded − unfolded| / max |unfolded| allowed: float32 rounding of the refactored products, far below the golden
# tolerances.
FOLD_TOLERANCE = 1e-5


def _block() -> nn.Module:
    """Every pattern the folding recognises or must leave alone: conv→BN in a Sequential and as convK/bnK
    attributes, a BN before a padded conv (kept), a BN that does not follow a conv (kept)."""
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, 1, 1, bias=True), nn.BatchNorm2d(6)
            self.seq = nn.Sequential(nn.BatchNorm2d(6), nn.Conv2d(6, 5, 3, 2, 1, bias=False), nn.BatchNorm2d(5),
                                     nn.PReLU(5), nn.BatchNorm2d(5))

        def forward(self, x):
            return self.seq(torch.relu(self.bn1(self.conv1(x))))
    return Block()


@pytest.mark.parametrize("seed", [0, 1])
def test_folding_keeps_the_outputs_and_removes_the_batch_norms_after_convolutions(seed):
    plain = _randomise(_block(), seed)
    folded = fold_batch_norms(copy.deepcopy(plain))
    assert isinstance(folded.bn1, nn.Identity) and isinstance(folded.seq[2], nn.Identity)
    assert isinstance(folded.seq[0], nn.BatchNorm2d) and isinstance(folded.seq[4], nn.BatchNorm2d)
    x = torch.randn(2, 3, 17, 17, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        reference, out = plain(x), folded(x)
    assert (out - reference).abs().max() <= FOLD_TOLERANCE * reference.abs().max()


def test_train_mode_batch_norms_are_not_folded():
    block = _block().train()
    assert fold_batch_norms(block).bn1.__class__ is nn.BatchNorm2d


@pytest.mark.parametrize("module, model_cls, config", [TINY_CONFIGS[0], TINY_CONFIGS[2]])
def test_loaded_encoders_fold_at_inference_only(module, model_cls, config):
    plain = _randomise(model_cls(config))
    fast = module.KIND.set_mode(copy.deepcopy(plain), False)
    trainable = module.KIND.set_mode(copy.deepcopy(plain), True)
    assert not any(isinstance(m, nn.Identity) for m in trainable.modules())
    assert any(isinstance(m, nn.Identity) for m in fast.modules())
    size = config.input_size if module.__name__.endswith("e4e") else module.INPUT_SIZE
    for seed in range(2):
        x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            reference, out = plain(x), fast(x)
        assert (out - reference).abs().max() <= FOLD_TOLERANCE * reference.abs().max()
