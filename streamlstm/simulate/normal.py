"""Normal behaviour for the simulator: what a healthy patient or a working pump looks like.

Vitals: per-patient baselines (dbp tracking sbp), a circadian rhythm, AR(1) noise with
correlated innovations (sbp/dbp strongly, hr/rr weakly) and correlated measurement error.
Sensors: a daily two-shift load cycle drives flow; pressure (~flow^2) and power (~flow^1.5)
follow with per-pump lags; vibration is noisy with a small load term; bearing temperature
follows load slowly on top of ambient. Then values are clipped and rounded like a device.

All streams are computed together (one time loop for the recursions) from per-stream draws.
"""

from __future__ import annotations

import numpy as np

FEATURES: dict[str, list[str]] = {
    "vitals": ["hr", "spo2", "rr", "sbp", "dbp", "temp"],
    "sensors": ["temperature", "pressure", "flow", "vibration", "power"],
}
# Physiological limits the values are clipped to (inside the default feature_ranges).
VITAL_RANGES = {
    "hr": (25, 220),
    "spo2": (50, 100),
    "rr": (4, 60),
    "sbp": (50, 250),
    "dbp": (25, 150),
    "temp": (33.0, 42.0),
}
# Device resolution: integer hr/spo2/rr/bp like a bedside monitor, temperatures to 0.1.
DECIMALS = {"hr": 0, "spo2": 0, "rr": 0, "sbp": 0, "dbp": 0, "temp": 1}
DECIMALS |= {"temperature": 1, "pressure": 2, "flow": 1, "vibration": 2, "power": 1}

# Vitals, in FEATURES order: AR(1) sigma and coefficient, daily amplitude and peak hour.
_V_SD = np.array([3.0, 0.8, 1.3, 4.5, 3.5, 0.1])
_V_PHI = np.array([0.92, 0.85, 0.8, 0.93, 0.93, 0.995])
_V_AMP = np.array([5.0, 0.4, 1.0, 6.0, 4.0, 0.25])
_V_PEAK = np.array([16.0, 14.0, 16.0, 15.0, 15.0, 18.0])
_V_MEAS = 0.3  # white measurement noise, relative to the AR sigma
# Innovation correlations: sbp/dbp strongly, hr/rr and hr/bp weakly, spo2 dips as rr rises.
_V_CORR = np.array([
    [1.0, -0.1, 0.35, 0.2, 0.15, 0.0],
    [-0.1, 1.0, -0.15, 0.0, 0.0, 0.0],
    [0.35, -0.15, 1.0, 0.1, 0.05, 0.0],
    [0.2, 0.0, 0.1, 1.0, 0.8, 0.0],
    [0.15, 0.0, 0.05, 0.8, 1.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
])  # fmt: skip


def normal_values(
    kind: str, rngs: list[np.random.Generator], ts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Raw (unrounded) values (S, L, F) and each stream's noise sigma (S, F)."""
    return (_vitals if kind == "vitals" else _sensors)(rngs, ts)


def _hours(ts: np.ndarray) -> np.ndarray:
    return (ts % 86_400.0) / 3600.0


def _recur(drive: np.ndarray, phi: np.ndarray | float, init: np.ndarray) -> np.ndarray:
    """y[:, 0] = init, y[:, t] = phi * y[:, t-1] + drive[:, t]: one loop over time for all
    streams at once (numpy has no linear filter)."""
    out = np.empty_like(drive)
    out[:, 0] = state = init
    for t in range(1, drive.shape[1]):
        state = phi * state + drive[:, t]
        out[:, t] = state
    return out


def _ar1(e: np.ndarray, phi: np.ndarray | float) -> np.ndarray:
    """Unit-variance stationary AR(1) from standard-normal innovations e (S, L, ...)."""
    return _recur(np.sqrt(1 - np.square(phi)) * e, phi, e[:, 0])


def _vitals(rngs: list[np.random.Generator], ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    chol = np.linalg.cholesky(_V_CORR)
    draws = [_patient(rng, len(ts), chol) for rng in rngs]
    base, sd, amp, shift, innov, meas = (np.stack(x) for x in zip(*draws, strict=True))
    phase = _hours(ts)[None, :, None] - _V_PEAK - shift[:, None, None]
    daily = amp[:, None, :] * np.cos(2 * np.pi * phase / 24.0)
    noise = sd[:, None, :] * (_ar1(innov, _V_PHI) + _V_MEAS * meas)
    return base[:, None, :] + daily + noise, noise.std(axis=1)


def _patient(rng: np.random.Generator, length: int, chol: np.ndarray) -> tuple:
    """One patient: baselines, noise and rhythm sizes, chronotype, innovations."""
    hr, spo2, rr = rng.uniform(55, 100), rng.uniform(94, 99), rng.uniform(12, 20)
    sbp = rng.uniform(100, 140)
    dbp = np.clip(0.55 * sbp + rng.normal(5, 4), 60, 90)  # diastolic tracks systolic
    base = np.array([hr, spo2, rr, sbp, dbp, rng.uniform(36.4, 37.4)])
    sd = _V_SD * rng.uniform(0.7, 1.4, 6)
    amp = _V_AMP * rng.uniform(0.5, 1.5, 6)
    innov = rng.standard_normal((length, 6)) @ chol.T
    # Measurement errors correlate too: one cuff or arterial line gives both pressures.
    meas = rng.standard_normal((length, 6)) @ chol.T
    return base, sd, amp, rng.normal(0, 1.0), innov, meas


def _sensors(rngs: list[np.random.Generator], ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    draws = [_pump(rng, len(ts)) for rng in rngs]
    p = {k: np.stack([d[k] for d in draws]) for k in draws[0]}
    noise = {
        "load": _ar1(p["load_e"], 0.97),
        "pressure": _ar1(p["meas"][..., 1], 0.6),
        "temperature": _ar1(p["meas"][..., 0], 0.9),
        "white": p["meas"],
    }
    noisy = _pump_signal(p, ts, noise)
    # The sigma is what the noise adds to the noise-free signal, flow-driven parts included.
    clean = _pump_signal(p, ts, {k: np.zeros_like(v) for k, v in noise.items()})
    return noisy, (noisy - clean).std(axis=1)


def _pump(rng: np.random.Generator, length: int) -> dict:
    """One pump: rated flow, load cycle, pressure and power curves and lags, temperatures."""
    return {
        "nom": rng.uniform(80, 200),  # rated flow, m3/h
        "base": rng.uniform(0.45, 0.7),  # mean load fraction
        "amp": rng.uniform(0.1, 0.25),  # daily load swing
        "shift": rng.normal(0, 1.5),  # hours: plants keep different schedules
        "p_static": rng.uniform(1.5, 3.0),  # bar
        "p_gain": rng.uniform(1.0, 3.0),  # bar at full load
        "lag_p": rng.integers(1, 4),  # readings
        "p_nom": rng.uniform(15, 60),  # kW
        "lag_w": rng.integers(2, 6),
        "v0": rng.uniform(1.0, 3.0),  # mm/s
        "t_amb": rng.uniform(20, 30),  # degC
        "heat": rng.uniform(15, 30),  # degC above ambient at full load
        "load_e": rng.standard_normal(length),
        "meas": rng.standard_normal((length, 5)),
    }


def _pump_signal(p: dict, ts: np.ndarray, noise: dict) -> np.ndarray:
    def col(name: str) -> np.ndarray:
        return p[name][:, None]

    hours = _hours(ts)[None, :] - col("shift")
    # Two shifts a day: a main afternoon peak and a smaller morning one.
    cycle = 0.7 * np.cos(2 * np.pi * (hours - 14) / 24) + 0.3 * np.cos(4 * np.pi * (hours - 9) / 24)
    load = np.clip(col("base") + col("amp") * cycle + 0.05 * noise["load"], 0.05, 1.0)
    white = noise["white"]
    flow = col("nom") * load * (1 + 0.01 * white[..., 2])
    # System pressure rises with flow squared, motor power with flow^1.5, both lagging.
    pressure = col("p_static") + col("p_gain") * _lagged(load, p["lag_p"]) ** 2
    pressure += 0.02 * noise["pressure"]
    power = col("p_nom") * (0.1 + _lagged(load, p["lag_w"]) ** 1.5 + 0.01 * white[..., 4])
    vibration = col("v0") * (0.6 + 0.6 * load + 0.12 * white[..., 3])
    # Bearing temperature follows load over about an hour (at 60 s readings), plus ambient.
    warm = _recur(0.02 * load, 0.98, load[:, 0])
    temperature = col("t_amb") + 1.5 * np.cos(2 * np.pi * (hours - 15) / 24) + col("heat") * warm
    temperature += 0.1 * noise["temperature"]
    return np.stack([temperature, pressure, flow, vibration, power], axis=-1)


def _lagged(x: np.ndarray, lag: np.ndarray) -> np.ndarray:
    idx = np.clip(np.arange(x.shape[1])[None, :] - lag[:, None], 0, None)
    return np.take_along_axis(x, idx, axis=1)


def finish(kind: str, raw: np.ndarray) -> np.ndarray:
    """Clip to what the device can report, then round to its resolution (in place)."""
    features = FEATURES[kind]
    if kind == "vitals":
        sbp, dbp = features.index("sbp"), features.index("dbp")
        raw[..., dbp] = np.minimum(raw[..., dbp], raw[..., sbp] - 10)  # keep a pulse pressure
        for i, name in enumerate(features):
            raw[..., i] = np.clip(raw[..., i], *VITAL_RANGES[name])
    else:
        np.maximum(raw, 0.0, out=raw)  # flows, pressures and powers are not negative
    for i, name in enumerate(features):
        raw[..., i] = np.round(raw[..., i], DECIMALS[name])
    return raw
