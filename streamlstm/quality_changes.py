"""The changes made to the shipped configs while measuring detection quality, each with the
overrides that undo it. ``streamlstm quality`` re-runs every suite with each change undone,
so docs/quality.md shows each change's effect from the very run that produced the report."""

from __future__ import annotations

EPOCHS = "`training.epochs: 20` in the shipped config (before: 8)"

# Changes to a shipped config made while measuring here. Each suite is re-run without the
# change (the streaming detector only, same seed), so the report shows its effect from this
# very run: suite -> [(what changed, overrides that restore the previous default)].
CHANGES: dict[str, list[tuple[str, dict]]] = {
    "vitals": [
        (
            "`detector.trend_horizon: 30` and `detector.norm_scale_horizon: 300` in "
            "configs/vitals.yaml (before: the normalisation level had no slope and its "
            "variance followed `norm_horizon`, 60 readings)",
            {"detector.trend_horizon": None, "detector.norm_scale_horizon": None},
        ),
        (EPOCHS, {"training.epochs": 8}),
    ],
    "sensors": [
        (
            "`detector.trend_horizon: 10` in configs/sensors.yaml (before: the normalisation "
            "level had no slope, so it lagged every ramp)",
            {"detector.trend_horizon": None},
        ),
        (EPOCHS, {"training.epochs": 8}),
    ],
    "nab": [
        (
            "`detector.norm_scale_horizon: 1000` in configs/univariate.yaml (before: the "
            "normalisation variance followed `norm_horizon`, 60 readings)",
            {"detector.norm_scale_horizon": None},
        ),
        (
            "`detector.score_inputs: true` in configs/univariate.yaml (before: only the "
            "reconstruction errors were scored, not each reading's distance from the forecast)",
            {"detector.score_inputs": False},
        ),
        (
            "`detector.season_periods_s: [86400, 604800]` in configs/univariate.yaml "
            "(before: no daily or weekly profile in the normaliser's forecast)",
            {"detector.season_periods_s": []},
        ),
        (
            "the weekly profile of `detector.season_periods_s` (before: `[86400]`, a daily "
            "profile only)",
            {"detector.season_periods_s": [86400.0]},
        ),
        (
            "`detector.split_scale: true` in configs/univariate.yaml (before: one std for "
            "readings above and below the forecast)",
            {"detector.split_scale": False},
        ),
        (EPOCHS, {"training.epochs": 8}),
    ],
}
