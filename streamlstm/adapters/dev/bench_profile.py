"""``bench e2e --profile``: where the workers' loop spent its time, from the stage seconds
each worker reports in its stats (``stream.ports.StageTimes``): fetch (Kafka poll), decode
(bytes -> checked columns, dead letters), group (columns -> per-group readings), step
(``Detector.score``: tensor step and alert state machine), alerts (events produced, counts),
produce (the producer flush before a snapshot), snapshot, commit. Beside them, the garbage
collector's runs in the workers (``ops.heap.GcPauses``): a collection stalls whichever stage
it falls in.
"""

from __future__ import annotations


def stage_profile(before: list[dict], after: list[dict], per_record: float) -> dict:
    """Where the workers' time went between two ``Supervisor.stats()``: per loop stage, the
    total seconds (all workers), microseconds per reading and milliseconds per poll; the
    longest single lap of each stage over the whole run; records per poll."""
    total: dict[str, float] = {}
    longest: dict[str, float] = {}
    polls = records = 0
    for b, a in zip(before, after, strict=True):
        polls += a.get("polls", 0) - b.get("polls", 0)
        records += a.get("records", 0) - b.get("records", 0)
        for stage, seconds in a.get("stage_s", {}).items():
            total[stage] = total.get(stage, 0.0) + seconds - b.get("stage_s", {}).get(stage, 0.0)
        for stage, seconds in a.get("stage_max_s", {}).items():
            longest[stage] = max(longest.get(stage, 0.0), seconds)
    readings = max(records * per_record, 1)
    return {
        "polls": polls,
        "records_per_poll": round(records / max(polls, 1), 1),
        "stage_s": {k: round(v, 3) for k, v in total.items()},
        "stage_us_per_reading": {k: round(v / readings * 1e6, 2) for k, v in total.items()},
        "stage_ms_per_poll": {k: round(v / max(polls, 1) * 1e3, 2) for k, v in total.items()},
        "stage_max_ms_whole_run": {k: round(v * 1e3, 1) for k, v in longest.items()},
        "gc": gc_profile(before, after),
    }


def gc_profile(before: list[dict], after: list[dict]) -> dict:
    """The workers' garbage collections between two stats (all workers): how many, how many
    full (generation 2), their total pause, and the longest pause of the whole run."""
    diff = {"collections": 0, "full": 0, "pause_s": 0.0}
    longest = 0.0
    for b, a in zip(before, after, strict=True):
        ga, gb = a.get("gc", {}), b.get("gc", {})
        for key in diff:
            diff[key] += ga.get(key, 0) - gb.get(key, 0)
        longest = max(longest, ga.get("max_pause_s", 0.0))
    return {
        "collections": diff["collections"],
        "full": diff["full"],
        "pause_ms": round(diff["pause_s"] * 1e3, 1),
        "max_pause_ms_whole_run": round(longest * 1e3, 1),
    }
