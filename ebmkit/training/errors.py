"""Why training stops."""


class TrainingError(RuntimeError):
    """Training cannot go on (a divergence, changed data, an unusable run directory)."""


class DivergenceError(TrainingError):
    """The divergence watch stopped the run; ``step`` is where the problem began."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step

    def __reduce__(self):  # across processes (`ebmkit bench toy`'s workers)
        return type(self), (str(self), self.step)
