"""The virtual clock: simulated seconds per client, per phase and per round.

A client's time is ``download bytes / downlink + compute / speed + upload bytes / uplink +
latency``. A phase (one ``send_and_receive``) lasts as long as its slowest participant; with a
deadline, slower clients are stragglers whose replies are dropped and the phase lasts the
deadline. A round is the sum of its phases. Clients that were unavailable or dropped out do not
hold the round up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedsim.config.schema import DeviceProfile


def transfer_seconds(num_bytes: int, mbps: float) -> float:
    """Seconds to move ``num_bytes`` at ``mbps`` Mbit/s (0 Mbit/s: unlimited)."""
    return 0.0 if mbps <= 0 else num_bytes * 8 / (mbps * 1e6)


def client_seconds(profile: DeviceProfile, down_bytes: int, compute_s: float,
                   up_bytes: int) -> float:
    """Simulated seconds of one client's participation in one phase."""
    return (transfer_seconds(down_bytes, profile.downlink_mbps) + compute_s / profile.speed
            + transfer_seconds(up_bytes, profile.uplink_mbps) + profile.latency_ms / 1000.0)


def within_deadline(seconds: float, deadline_s: float) -> bool:
    """Whether a client's simulated ``seconds`` make the phase deadline (0: no deadline)."""
    return deadline_s <= 0 or seconds <= deadline_s


@dataclass
class VirtualClock:
    """Accumulates phases into rounds and rounds into the run's simulated time."""

    deadline_s: float = 0.0
    total_s: float = 0.0
    _phases: list[float] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)

    def phase(self, times: list[float], fates: dict[str, int]) -> list[bool]:
        """Close one phase given its participants' times; return which replies make it."""
        on_time = [within_deadline(t, self.deadline_s) for t in times]
        stragglers = on_time.count(False)
        longest = max(times, default=0.0)
        self._phases.append(min(longest, self.deadline_s) if stragglers else longest)
        for key, n in {**fates, "stragglers": stragglers}.items():
            self._counts[key] = self._counts.get(key, 0) + n
        return on_time

    def end_round(self) -> dict[str, Any]:
        """The round's simulated time and events, as metrics.jsonl fields; starts a new round."""
        round_s = sum(self._phases)
        self.total_s += round_s
        report = {"simulated_seconds": round_s, "cumulative_simulated_seconds": self.total_s,
                  "stragglers": self._counts.get("stragglers", 0),
                  "unavailable_clients": self._counts.get("unavailable", 0),
                  "dropouts": self._counts.get("dropout", 0),
                  "crashed_clients": self._counts.get("crashed", 0),
                  "timed_out_clients": self._counts.get("timed_out", 0)}
        self._phases, self._counts = [], {}
        return report
