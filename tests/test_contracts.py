"""ebmkit.testing's contracts hold for the built-in components (so they ask nothing unfair)."""

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
