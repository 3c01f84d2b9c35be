"""What every recipe logs (issue 31): the energies of positives and negatives and their gap, and how
far the sampler's chains moved."""

import pytest
import torch

from ebmkit import Recipe


# -- what every recipe logs -------------------------------------------------------------
@pytest.mark.parametrize("preset", ["drl", "ddaebm", "dxmi"])
def test_energy_losses_log_the_energies_of_positives_and_negatives_and_their_gap(preset):
    from ebmkit.model import EnergyModel

    model = EnergyModel(Recipe.from_name(preset), (2,))
    g = torch.Generator().manual_seed(0)
    batch = model.divergence.training_batch(torch.randn(64, 2, generator=g), generator=g)
    negatives = torch.randn(64, 2, generator=g)
    metrics = model.divergence.energy_loss(batch, negatives, model.energy).metrics
    with torch.no_grad():
        e_pos = model.energy(batch.positives, batch.level).mean()
        e_neg = model.energy(negatives, batch.level).mean()
    assert float(metrics["e_pos"]) == pytest.approx(float(e_pos), rel=1e-5, abs=1e-6)
    assert float(metrics["e_neg"]) == pytest.approx(float(e_neg), rel=1e-5, abs=1e-6)
    assert float(metrics["e_gap"]) == pytest.approx(float(e_neg - e_pos), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("preset", ["drl", "cdrl"])
def test_langevin_chains_report_how_far_they_moved(preset):
    from ebmkit.model import EnergyModel

    model = EnergyModel(Recipe.from_name(preset), (2,))
    g = torch.Generator().manual_seed(0)
    batch = model.divergence.training_batch(torch.randn(64, 2, generator=g), generator=g)
    record = model.sampler.record(batch, model.energy, generator=torch.Generator().manual_seed(1))
    start = batch.condition if preset == "drl" else record.saved["proposal"].detach()
    expected = (record.negatives - start).norm(dim=1).mean()
    assert float(record.metrics["chain_move"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(expected) > 0
