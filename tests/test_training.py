from __future__ import annotations

import pytest
import torch

from dreamgym.training import StageError, load_trained, train_epochs


def _fit(stage_dir, epochs, validation, *, resume=False):
    """Epoch e sets the weight to e + 1 and reports validation[e]."""
    model = torch.nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def run_epoch(epoch):
        with torch.no_grad():
            model.weight.fill_(epoch + 1.0)
        return {"loss": 1.0, "validation_loss": validation[epoch]}

    result = train_epochs(stage_dir, model, optimizer, epochs, run_epoch, {}, resume=resume, select="validation_loss")
    return model, result


def test_the_best_validation_epoch_is_the_one_loaded(tmp_path):
    model, result = _fit(tmp_path, 4, [3.0, 1.0, 2.0, 1.5])
    assert result.kept_epoch == 2 and model.weight.item() == 2.0
    loaded = torch.nn.Linear(1, 1, bias=False)
    checkpoint = load_trained(tmp_path, loaded)
    assert loaded.weight.item() == 2.0
    assert checkpoint["model"]["weight"].item() == 4.0  # the last epoch stays, for --resume


def test_resuming_keeps_the_best_epoch_found_before_the_interruption(tmp_path):
    validation = [3.0, 1.0, 2.0, 1.5]
    _fit(tmp_path, 4, validation)
    with pytest.raises(StageError, match="--resume"):
        _fit(tmp_path, 6, validation + [2.5, 0.5])
    model, result = _fit(tmp_path, 6, validation + [2.5, 0.5], resume=True)
    assert result.trained_epochs == 2 and result.kept_epoch == 6 and model.weight.item() == 6.0
    _, again = _fit(tmp_path, 5, validation + [2.5])
    assert again.trained_epochs == 0 and again.kept_epoch == 6
