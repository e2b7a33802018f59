"""A polynomial (cubic by default) sparsity schedule, like TF-MOT's ``PolynomialDecay``.

From ``begin_step`` to ``end_step`` the sparsity rises from ``initial_sparsity`` to ``final_sparsity`` as
``final + (initial - final) * (1 - p) ** power`` with ``p`` the fraction of the way through: fast at first,
while many weights are nearly zero, then slowly, so the last weights to go have time to be compensated.
Masks are recomputed every ``frequency`` steps inside that window (and at ``end_step``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from core.errors import SparseLabError


@dataclass(frozen=True)
class PolynomialSchedule:
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.5
    begin_step: int = 0
    end_step: int = 1000
    power: float = 3.0
    frequency: int = 100

    def __post_init__(self):
        for name in ("initial_sparsity", "final_sparsity"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise SparseLabError(f"Schedule {name} {value} is outside [0, 1).")
        if self.initial_sparsity > self.final_sparsity:
            raise SparseLabError(f"Schedule sparsity must not fall: initial {self.initial_sparsity} > final "
                                 f"{self.final_sparsity}.")
        if self.begin_step < 0 or self.end_step < self.begin_step:
            raise SparseLabError(f"Schedule steps must satisfy 0 <= begin_step <= end_step, not "
                                 f"{self.begin_step}..{self.end_step}.")
        if self.frequency < 1:
            raise SparseLabError(f"Schedule frequency must be at least 1 step, not {self.frequency}.")
        if self.power <= 0:
            raise SparseLabError(f"Schedule power must be positive, not {self.power}.")

    def sparsity(self, step: int) -> float:
        """The target sparsity at ``step`` (held at initial before the window and at final after it)."""
        if step >= self.end_step:
            return self.final_sparsity
        if step <= self.begin_step:
            return self.initial_sparsity
        done = (step - self.begin_step) / (self.end_step - self.begin_step)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - done) ** self.power

    def should_update(self, step: int) -> bool:
        """Whether masks are recomputed at ``step``: every ``frequency`` steps in the window, and at its end."""
        if step < self.begin_step or step > self.end_step:
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step

    def get_config(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> PolynomialSchedule:
        return cls(**{key: config[key] for key in cls.__dataclass_fields__ if key in config})

    @classmethod
    def one_shot(cls, sparsity: float) -> PolynomialSchedule:
        """Final sparsity from step 0: masks set once (one-shot methods), then held while training."""
        return cls(initial_sparsity=sparsity, final_sparsity=sparsity, begin_step=0, end_step=0, frequency=1)
