"""Containers shared by every dataset: a loader returns a RawDataset of whole recordings, and the
generic pipeline (windows.py, partition.py) turns it into per-client windows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Modality:
    """A group of input channels that a device either has or lacks as a whole."""

    name: str
    channels: tuple[int, ...]  # column indices into Recording.signals
    channel_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    modalities: tuple[Modality, ...]
    sample_rate_hz: float
    channel_names: tuple[str, ...]

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)


@dataclass
class Recording:
    """One continuous recording of one subject: signals (T, C) float32 and labels (T,) int64 in
    0..n_classes-1, or -1 for samples to drop (null class, transients)."""

    subject: int
    signals: np.ndarray
    labels: np.ndarray
    source: str = ""


@dataclass
class RawDataset:
    spec: DatasetSpec
    recordings: list[Recording] = field(default_factory=list)


@dataclass
class WindowSet:
    """Windows (N, C, L) float32 with labels, subjects and a time order key."""

    x: np.ndarray
    y: np.ndarray
    subject: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, idx: np.ndarray) -> WindowSet:
        return WindowSet(self.x[idx], self.y[idx], self.subject[idx])

    @staticmethod
    def empty(n_channels: int, length: int) -> WindowSet:
        return WindowSet(
            np.zeros((0, n_channels, length), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
        )


@dataclass
class FederatedData:
    """What a run trains and evaluates on. Client k's windows have the channels of modalities it
    lacks set to zero at load, so no absent sensor can leak into training."""

    spec: DatasetSpec
    clients_train: list[WindowSet]
    clients_test: list[WindowSet]
    server_train: WindowSet
    modality_sets: list[tuple[str, ...]]
    fingerprint: str = ""

    @property
    def n_clients(self) -> int:
        return len(self.clients_train)
