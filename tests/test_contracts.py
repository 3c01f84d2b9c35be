"""ebmkit.testing's contracts hold for the built-in components (so they ask nothing unfair)."""

import torch

from ebmkit.testing import DivergenceContract, EnergyContract, NetworkContract, SamplerContract, ScheduleContract


class TestLangevinSampler(SamplerContract):
    spec = {"name": "langevin", "n_steps": 3}


class TestCooperativeSampler(SamplerContract):
    base_recipe = "cdrl"
    spec = {"name": "cooperative", "initializer": {"name": "mlp", "width": 16, "depth": 1},
            "refine": {"name": "langevin", "n_steps": 2}}


class TestDRLEnergy(EnergyContract):
    spec = {"name": "drl", "b_square": 2e-3, "c_rule": "constant"}


class TestMLPNetwork(NetworkContract):
    spec = {"name": "mlp", "width": 16, "depth": 1}


class TestLogSNRSchedule(ScheduleContract):
    spec = {"name": "cosine_logsnr", "num_levels": 6, "logsnr_min": -5.1, "logsnr_max": 9.8}


class TestVPSchedule(ScheduleContract):
    base_recipe = "ddaebm"
    spec = {"name": "vp", "num_levels": 4}


class TestAdversarialSampler(SamplerContract):
    base_recipe = "ddaebm"
    spec = {"name": "adversarial"}


class TestResidualNormEnergy(EnergyContract):
    base_recipe = "ddaebm"
    spec = {"name": "residual_norm"}


class TestRecoveryLikelihood(DivergenceContract):
    spec = {"name": "recovery_likelihood"}


class TestJeffrey(DivergenceContract):
    base_recipe = "ddaebm"
    spec = {"name": "jeffrey"}


class TestReplaySampler(SamplerContract):
    base_recipe = "pcd"
    spec = {"name": "replay", "n_steps": 3, "buffer_size": 64, "source": {"name": "uniform", "low": -4.0, "high": 4.0}}


class TestContrastiveDivergence(DivergenceContract):
    base_recipe = "pcd"
    spec = {"name": "cd", "alpha": 0.1}


class TestScalarEnergyWithoutASchedule(EnergyContract):
    base_recipe = "pcd"
    spec = {"name": "scalar"}


class TestReverseDiffusionSampler(SamplerContract):
    base_recipe = "dsm"
    spec = {"name": "reverse_diffusion", "clip_x0": 4.0}


class TestAnnealedLangevinSampler(SamplerContract):
    base_recipe = "dsm"
    spec = {"name": "reverse_diffusion", "method": "annealed_langevin", "steps_per_level": 2}


class TestDSM(DivergenceContract):
    base_recipe = "dsm"
    spec = {"name": "dsm"}

    def test_training_batch_shapes_and_levels(self, model, data):
        """DSM's level is the noisy sample's own, 1..T on this schedule (level 0 is exact data,
        where q(x_0 | x) has no score); the contract's 0..T−1 is a training pair's lower level."""
        batch = self.batch(model, data)
        assert batch.positives.shape == data.shape and batch.condition.shape == data.shape
        assert batch.level.dtype == torch.long and batch.level.shape == (16,)
        assert 1 <= int(batch.level.min()) and int(batch.level.max()) <= model.schedule.num_levels


class TestVEGeometricSchedule(ScheduleContract):
    base_recipe = "dsm"
    spec = {"name": "ve_geometric", "num_levels": 20}


EM_SMALL = {**SamplerContract.small, "train.phases": [
    {"name": "warmup", "steps": 1, "divergence": {"lambda_cd": 0.0}}, {"name": "main", "steps": 1, "ema_decay": 0.9}]}


class TestTemperedLangevinSampler(SamplerContract):
    base_recipe = "energy_matching"
    small = EM_SMALL
    spec = {"name": "tempered_langevin", "n_steps": 4, "dt": 0.25, "generate_time": 1.5, "generate_dt": 0.25,
            "temperature": {"name": "ramp", "epsilon_max": 0.1, "cutoff": 0.5}}


class TestEnergyMatching(DivergenceContract):
    base_recipe = "energy_matching"
    small = EM_SMALL
    spec = {"name": "energy_matching", "lambda_cd": 1.0, "cd_neg_clamp": None}

    def batch(self, model, data, seed=0):
        """With the second, flow batch that the trainer draws for it (``data_batches = 2``)."""
        batch = super().batch(model, data, seed)
        batch.more = (data.flip(0),)
        return batch
