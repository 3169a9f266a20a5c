"""``streamlstm evaluate --retrain-every N``: score a file with the live retraining schedule
simulated in the replay (``streamlstm.retrain_replay``), so adaptivity is measured too."""

from __future__ import annotations

import sys

import torch

from streamlstm.config import Config
from streamlstm.datafiles import FileData
from streamlstm.detector import ScoringModel
from streamlstm.pipeline import ReplayRow
from streamlstm.retrain_replay import RetrainRound, Train, replay_with_retraining
from streamlstm.training import Series


def in_process_trainer(config: Config, device: torch.device) -> Train:
    """A round's training: ``training.fit`` in this process with the configured settings (and
    seed, so rounds are reproducible). No per-epoch bar: the round line reports the result."""
    from streamlstm.commands.common import fit_model

    def train(group: str, series: list[Series]) -> ScoringModel:
        return fit_model(config, group, series, device)[0]

    return train


def score_file_retraining(
    config: Config,
    path: str,
    model_dir: str | None,
    train_fraction: float,
    device: torch.device,
    every: int,
    quiet: bool = False,
) -> tuple[FileData, list[ReplayRow], list[RetrainRound]]:
    """Like ``replay.score_file`` (the first model from --model or --train-fraction), with a
    retrain round every ``every`` readings replayed."""
    from streamlstm.commands.replay import engine_for, read_usable, replay_bar

    data = read_usable(path, config)
    engine = engine_for(config, data, model_dir, train_fraction, device, quiet)
    with replay_bar(len(data.readings), quiet) as bar:

        def say(text: str) -> None:
            if not quiet:
                bar.write(text, file=sys.stderr)  # above the bar, not through it

        rows, _, rounds = replay_with_retraining(
            engine,
            data.readings,
            config,
            every,
            in_process_trainer(config, device),
            on_batch=bar.update,
            on_message=say,
        )
    return data, rows, rounds
