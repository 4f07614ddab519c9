"""Sound level on the camera: loudness per second as dBFS (RMS), from an optional microphone.

No audio leaves the device and none is stored: samples are read in chunks, squared and summed per
wall-clock second, and dropped; only the per-second level is kept (a few minutes of numbers).
Sources need nothing beyond the standard library and numpy:

- `wav:PATH` a WAV file (PCM 8/16/24/32 bit), played in real time and looped (tests, a recording);
- `alsa:DEVICE` an ALSA capture device through `arecord` (alsa-utils, on most Linux cameras), read
  as raw 16-bit mono from its stdout;
- `synthetic:level=-12,bpm=128` a kick drum over crowd-like noise at that level (the demo).

Crowd noise against music is left out: a single microphone in front of a PA hears the music 20-30
dB over the crowd, the two share the same band, and nothing here could be checked against a
labelled recording, so any share would be a guess presented as a measurement (docs/edge.md).
"""

from __future__ import annotations

import math
import subprocess
import threading
import time
import wave
from collections import deque

import numpy as np

from edge_package.contracts import SOUND_DBFS_MAX, SOUND_DBFS_MIN

CHUNK_S = 0.1
SAMPLE_RATE = 16_000


class AudioError(RuntimeError):
    """An audio source cannot be opened or read; the message names it."""


def dbfs(mean_square: float) -> float:
    """RMS level in dB relative to full scale (a full-scale sine reads -3 dBFS), clamped to the
    contract's range; silence (log of zero) reads SOUND_DBFS_MIN."""
    if mean_square <= 0 or not math.isfinite(mean_square):
        return SOUND_DBFS_MIN
    return max(SOUND_DBFS_MIN, min(SOUND_DBFS_MAX, 10.0 * math.log10(mean_square)))


def leq(levels: list[float]) -> float | None:
    """The equivalent level of several per-second levels (the mean of their power, in dB)."""
    if not levels:
        return None
    return dbfs(sum(10.0 ** (level / 10.0) for level in levels) / len(levels))


class SoundMeter:
    """Per wall-clock second: the mean square of the samples fed in that second, as dBFS."""

    def __init__(self, keep_s: int = 600):
        self._second: int | None = None
        self._sum = 0.0
        self._count = 0
        self.levels: deque = deque(maxlen=keep_s)  # (second, dBFS), oldest first
        self._lock = threading.Lock()

    def feed(self, samples: np.ndarray, at_ms: int) -> None:
        """Samples as floats in -1..1 (any shape), heard at wall-clock `at_ms`."""
        second = int(at_ms // 1000)
        values = np.asarray(samples, dtype=np.float64).ravel()
        with self._lock:
            if self._second is not None and second != self._second:
                self._close()
            self._second = second
            self._sum += float(np.dot(values, values))
            self._count += values.size

    def _close(self) -> None:
        if self._count:
            self.levels.append((self._second, dbfs(self._sum / self._count)))
        self._sum, self._count = 0.0, 0

    def between(self, start_s: int, end_s: int) -> list[float]:
        """Levels of the finished seconds in [start_s, end_s)."""
        with self._lock:
            return [level for second, level in self.levels if start_s <= second < end_s]

    @property
    def latest(self) -> float | None:
        with self._lock:
            return self.levels[-1][1] if self.levels else None


# --- sources: read(n) -> float32 samples in -1..1 (fewer at the end of a file), close() ---------


class WavAudio:
    """A PCM WAV file as mono float samples, looped."""

    def __init__(self, path: str, loop: bool = True):
        self.path, self.loop = path, loop
        try:
            self._wav = wave.open(path, "rb")  # noqa: SIM115 - open until close()
        except (OSError, EOFError, wave.Error) as exc:
            raise AudioError(f"audio file {path!r} cannot be read: {exc}") from exc
        self.rate = self._wav.getframerate()
        self._width = self._wav.getsampwidth()
        self._channels = self._wav.getnchannels()
        if self._width not in (1, 2, 3, 4):
            raise AudioError(f"audio file {path!r}: {self._width * 8}-bit samples are not PCM")

    def read(self, frames: int) -> np.ndarray:
        raw = self._wav.readframes(frames)
        if not raw and self.loop:
            self._wav.rewind()
            raw = self._wav.readframes(frames)
        return pcm_to_float(raw, self._width, self._channels)

    def close(self) -> None:
        self._wav.close()


def pcm_to_float(raw: bytes, width: int, channels: int = 1) -> np.ndarray:
    """Little-endian PCM bytes as mono float32 in -1..1 (WAV's 8-bit is unsigned)."""
    if width == 1:
        values = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(raw[: len(raw) // 3 * 3], np.uint8).reshape(-1, 3).astype(np.int32)
        joined = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        values = np.where(joined >= 1 << 23, joined - (1 << 24), joined) / float(1 << 23)
    else:
        kind = np.int16 if width == 2 else np.int32
        values = np.frombuffer(raw[: len(raw) // width * width], kind) / float(1 << (8 * width - 1))
    values = np.asarray(values, np.float32)
    if channels > 1:
        values = values[: values.size // channels * channels].reshape(-1, channels).mean(axis=1)
    return values


class AlsaAudio:
    """An ALSA capture device through arecord's raw 16-bit mono output."""

    def __init__(self, device: str, rate: int = SAMPLE_RATE):
        self.rate = rate
        command = ["arecord", "-q", "-D", device, "-f", "S16_LE", "-c", "1", "-r", str(rate)]
        try:
            self._process = subprocess.Popen(
                [*command, "-t", "raw"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
        except OSError as exc:
            raise AudioError(f"ALSA device {device!r}: arecord cannot start ({exc})") from exc

    def read(self, frames: int) -> np.ndarray:
        raw = self._process.stdout.read(frames * 2)
        if not raw:
            raise AudioError("arecord stopped (device unplugged or busy)")
        return pcm_to_float(raw, 2)

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._process.kill()


class SyntheticAudio:
    """A kick drum on every beat over pink-ish crowd noise, at about `level` dBFS."""

    def __init__(self, level: float = -20.0, bpm: float = 120.0, seed: int = 0):
        if not SOUND_DBFS_MIN <= level <= SOUND_DBFS_MAX:
            raise AudioError(f"synthetic audio level must be within -120..0 dBFS, got {level}")
        self.rate, self.bpm = SAMPLE_RATE, bpm
        self._rng = np.random.default_rng(seed)
        self._at = 0
        self._gain = 1.0
        reference = self._mix(0, self.rate * 4)  # four seconds at unit gain set the level
        rms = float(np.sqrt(np.mean(reference**2)))
        self._gain = 10.0 ** (level / 20.0) / rms

    def _mix(self, start: int, frames: int) -> np.ndarray:
        t = (start + np.arange(frames)) / self.rate
        since_beat = (t * self.bpm / 60.0) % 1.0 * 60.0 / self.bpm
        kick = np.sin(2 * np.pi * 55.0 * since_beat) * np.exp(-since_beat * 12.0)
        return (kick * 1.2 + self._rng.normal(0.0, 0.3, frames)) * self._gain

    def read(self, frames: int) -> np.ndarray:
        mix = self._mix(self._at, frames)
        self._at += frames
        return np.clip(mix, -1.0, 1.0).astype(np.float32)

    def close(self) -> None:
        pass


def open_audio(spec: str):
    """An audio source from the config's `audio` value (see the module docstring)."""
    kind, _, rest = spec.partition(":")
    if kind == "wav" and rest:
        return WavAudio(rest)
    if kind == "alsa" and rest:
        return AlsaAudio(rest)
    if kind == "synthetic":
        from edge_package.sources import parse_params

        params = parse_params(rest)
        unknown = sorted(set(params) - {"level", "bpm", "seed"})
        if unknown:
            raise AudioError(f"synthetic audio: unknown parameters {', '.join(unknown)}")
        try:
            level = float(params.get("level", -20.0))
            bpm = float(params.get("bpm", 120.0))
            seed = int(params.get("seed", 0))
        except ValueError as exc:
            raise AudioError(f"synthetic audio: {exc}") from exc
        return SyntheticAudio(level=level, bpm=bpm, seed=seed)
    raise AudioError(f"audio {spec!r}: use wav:PATH, alsa:DEVICE or synthetic:level=..,bpm=..")


class AudioThread:
    """Reads a source in CHUNK_S chunks at real-time pace, feeds a SoundMeter, keeps nothing
    else. A read error is kept in `last_error` and ends the thread; the camera goes on."""

    def __init__(self, source, meter: SoundMeter | None = None, wall_ms=None):
        self.source = source
        self.meter = meter or SoundMeter()
        self.wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self.last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="stagepulse-audio", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        frames = int(self.source.rate * CHUNK_S)
        live = isinstance(self.source, AlsaAudio)  # arecord paces itself
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                samples = self.source.read(frames)
            except (AudioError, OSError, ValueError) as exc:
                self.last_error = f"audio: {exc}"[:500]
                return
            if samples.size:
                self.meter.feed(samples, self.wall_ms())
            if not live:
                next_at += CHUNK_S
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        self.source.close()
