"""A scripted Hopper-v5 gait: the fallback source of behaviour data (docs/design.md, "Published recipes", LDM).

The LDM paper's data come from behaviours that hop without falling, forward and backward, so that falling is
what leaves the data. The project's main source is now the shipped SAC hoppers of :mod:`mbrl.policies`
(+2.08 and -0.54 m/s); this tiny scripted controller hops too, but slowly (+0.07 / -0.016 m/s), and is kept
as a dependency-free fallback (``python -m benchmarks.hopper_ldm --data gait``):

    q*_j(t) = offset_j + amp_j * sin(2 pi freq t + phase_j)            (j = thigh, leg, foot)
    q*_thigh += k_angle * angle + k_angvel * angle_vel                   (torso-pitch feedback)
    a_j = clip(kp * (q*_j - q_j) - kd * qdot_j, -1, 1) + noise           (PD tracking, noise ~ N(0, sigma^2))

Its eleven parameters were found by ``benchmarks/hopper_gait_search.py`` (CEM on displacement after 1,000
steps with a fall penalty, several reset seeds) and are stored here as :data:`GAITS` (``"forward"`` and
``"backward"``). With small action noise the gaits hop for 1,000 steps without falling; noisier copies fall
sometimes, which is the mix of behaviour an LDM needs (:func:`collect_gait_data`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["GAITS", "GaitParams", "HopperGait", "collect_gait_data"]


@dataclass(frozen=True)
class GaitParams:
    """Parameters of :class:`HopperGait` (module docstring); joint order (thigh, leg, foot), radians."""

    freq: float = 2.0
    offset: tuple[float, float, float] = (-0.3, -0.6, 0.0)
    amp: tuple[float, float, float] = (0.3, 0.3, 0.2)
    phase: tuple[float, float, float] = (0.0, 1.5, 3.0)
    kp: float = 2.0
    kd: float = 0.1
    k_angle: float = 0.0
    k_angvel: float = 0.0

    def to_vector(self) -> np.ndarray:
        return np.array([self.freq, *self.offset, *self.amp, *self.phase, self.kp, self.kd, self.k_angle,
                         self.k_angvel], dtype=np.float64)

    @classmethod
    def from_vector(cls, v) -> GaitParams:
        v = [float(x) for x in np.asarray(v, dtype=np.float64).reshape(-1)]
        if len(v) != 14:
            raise ValueError(f"a gait vector has 14 entries, got {len(v)}")
        return cls(v[0], tuple(v[1:4]), tuple(v[4:7]), tuple(v[7:10]), v[10], v[11], v[12], v[13])

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


#: Gaits found by ``python -m benchmarks.hopper_gait_search`` (see its JSON for the search's numbers).
GAITS: dict[str, GaitParams] = {
    # search score 0.571 (mean displacement over 1,000 steps, 3 resets, noise 0.1); validation on 5 fresh seeds:
    # noise 0 / 0.1: 0 / 5 falls, +0.07 / +0.08 m/s; noise 0.2: 2 / 5; 0.3: 4 / 5; 0.4: 4 / 5 falls
    "forward": GaitParams(freq=2.5464, offset=(-0.1647, -0.4153, 0.2195), amp=(0.7208, 0.3921, 0.7151),
                          phase=(-1.5302, -0.1094, -0.0518), kp=1.1399, kd=0.3334, k_angle=-2.4447,
                          k_angvel=-0.1902),
    # search score 0.135; validation: noise 0 / 0.1: 0 / 5 falls, -0.016 m/s (nearly in place, drifting back);
    # noise 0.2: 4 / 5; 0.3: 5 / 5 falls (at -0.13 m/s)
    "backward": GaitParams(freq=3.189, offset=(0.026, -0.1341, 0.0164), amp=(0.4809, 0.0495, 0.0936),
                           phase=(1.965, 0.4302, -0.2605), kp=2.0816, kd=0.4054, k_angle=-2.2749,
                           k_angvel=-0.4581),
}

_DT = 0.008  # Hopper-v5: frame_skip 4 x timestep 0.002


class HopperGait:
    """The scripted gait as a controller: ``act(obs[12]) -> act[3]`` (numpy), one step of time per call.

    Args:
        params: a :class:`GaitParams` or the name of one of :data:`GAITS`.
        noise: std of Gaussian action noise (added after the PD law, then clipped to [-1, 1]).
        seed: seeds the noise.
    Observations are the 12-D ``make_task("Hopper-v5")`` ones (x first). Call :meth:`reset` per episode.
    """

    def __init__(self, params: GaitParams | str = "forward", noise: float = 0.0, seed: int | None = 0) -> None:
        if isinstance(params, str):
            if params not in GAITS:
                raise ValueError(f"params must be a GaitParams or one of {sorted(GAITS)}, got {params!r}")
            params = GAITS[params]
        if not isinstance(params, GaitParams):
            raise ValueError(f"params must be a GaitParams or a gait name, got {type(params).__name__}")
        noise = float(noise)
        if not math.isfinite(noise) or noise < 0:
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        self.params, self.noise = params, noise
        self._rng = np.random.default_rng(seed)
        p = params
        self._offset, self._amp, self._phase = (np.asarray(x, dtype=np.float64) for x in (p.offset, p.amp, p.phase))
        self.reset()

    def reset(self) -> None:
        self.t = 0

    def act(self, obs) -> np.ndarray:
        o = np.asarray(obs, dtype=np.float64)
        if o.shape != (12,):
            raise ValueError(f"obs must have shape (12,) (make_task('Hopper-v5') observations), got {o.shape}")
        p = self.params
        q, qd = o[3:6], o[9:12]
        target = self._offset + self._amp * np.sin(2 * math.pi * p.freq * self.t * _DT + self._phase)
        target[0] += p.k_angle * o[2] + p.k_angvel * o[8]
        a = np.clip(p.kp * (target - q) - p.kd * qd, -1.0, 1.0)
        if self.noise > 0:
            a = a + self.noise * self._rng.standard_normal(3)
        self.t += 1
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    __call__ = act


def collect_gait_data(
    gaits=("forward", "backward"),
    noises=(0.05, 0.1, 0.2, 0.3),
    episodes_per_setting: int = 1,
    max_steps: int = 300,
    seed: int = 0,
    task=None,
) -> dict[str, np.ndarray]:
    """Roll out every gait at every noise level (:func:`mbrl.policies.collect_rollouts`); float32 arrays.

    Returns:
        ``{"obs": [N, 12], "act": [N, 3], "next_obs": [N, 12], "terminated": [N] bool, "truncated": [N] bool,
        "episode": [N] int (episode index), "fell": [episodes] bool, "steps": [episodes] int,
        "setting": [episodes] int}``.
    """
    from mbrl.policies.rollouts import collect_rollouts

    return collect_rollouts(lambda g, noise, s: HopperGait(g, noise=noise, seed=s), list(gaits), noises,
                            episodes_per_setting, max_steps, seed, task)
