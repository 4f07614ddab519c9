"""Frame sources behind one interface: video file, RTSP, webcam, image folder, DeepLens, synthetic.

Every source yields Frame objects and ends by returning (never by raising) at the end of a file, so
the capture loop can decide whether to stop or reopen. A source that cannot open at all raises
SourceError with a message that names the source.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_package.redact import redact_source  # noqa: F401  (re-exported)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class SourceError(RuntimeError):
    """A frame source cannot be opened or read."""


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8, HxWx3
    index: int
    captured_at_ms: int
    # Ground truth (synthetic and labelled clips): (face_id, x, y, w, h); None: not labelled.
    truth: list | None = field(default_factory=list)
    # Seconds into a video file (its own timeline, growing across --loop restarts); None for a
    # live source. The throttle runs on it, so a file sends the same crops however fast it plays.
    media_s: float | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


class FrameSource:
    """Iterate for frames; close() releases the device. `name` identifies it in messages."""

    name = "source"

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VideoSource(FrameSource):
    """OpenCV capture of a video file, an RTSP/HTTP URL or a webcam index.

    A file ends at its last frame (or restarts with loop=True). A live source (URL, webcam) that
    drops is reopened with backoff, so a flaky stream or a replugged camera does not stop the
    device; `reconnects` counts the attempts and `max_reconnects` (None: forever) bounds them.
    """

    def __init__(
        self,
        target: str | int,
        *,
        loop: bool = False,
        max_reconnects: int | None = None,
        backoff_s: float = 1.0,
        sleep=time.sleep,
    ):
        self.target = target
        self.name = f"video {redact_source(target)}"  # names it in logs: never the password
        self.loop = loop
        self.live = isinstance(target, int) or "://" in str(target)
        self.max_reconnects = max_reconnects
        self.backoff_s = backoff_s
        self.reconnects = 0
        self._sleep = sleep
        if not self.live and not os.path.exists(target):
            raise SourceError(f"video file not found: {target}")
        self._cap = cv2.VideoCapture(target)
        if not self._cap.isOpened():
            raise SourceError(f"cannot open {self.name} (unreadable file, bad URL or no camera)")

    def _reopen(self) -> bool:
        failures = 0
        while self.max_reconnects is None or failures < self.max_reconnects:
            self.reconnects += 1
            self._sleep(min(30.0, self.backoff_s * 2**failures))
            self._cap.release()
            self._cap = cv2.VideoCapture(self.target)
            if self._cap.isOpened():
                return True
            failures += 1
        return False

    def _media_s(self, index_in_pass: int) -> float:
        """Position of the frame just read, in seconds: the container's timestamp, or the frame
        number over the nominal rate when the backend gives none."""
        position = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        if position > 0 or index_in_pass == 0:
            return position / 1000.0
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        return index_in_pass / fps if fps and fps > 0 else float(index_in_pass)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        in_pass = 0  # frames read since the file (re)started
        offset = 0.0  # media seconds played in earlier passes (--loop)
        last = 0.0
        while True:
            ok, image = self._cap.read()
            if not ok or image is None:
                if self.live:
                    if not self._reopen():
                        raise SourceError(
                            f"{self.name} dropped and did not come back after "
                            f"{self.max_reconnects} reconnects"
                        )
                    continue
                if not self.loop:
                    return
                fps = self._cap.get(cv2.CAP_PROP_FPS)
                offset = last + (1.0 / fps if fps and fps > 0 else 1.0)  # time keeps going on
                in_pass = 0
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self._cap.read()
                if not ok or image is None:
                    return
            media_s = None
            if not self.live:
                last = offset + self._media_s(in_pass)
                media_s = last
            in_pass += 1
            yield Frame(image=image, index=index, captured_at_ms=now_ms(), media_s=media_s)
            index += 1

    def close(self) -> None:
        self._cap.release()


class FolderSource(FrameSource):
    """Every image in a folder, in name order; unreadable files are skipped and counted."""

    def __init__(self, folder: str):
        self.name = f"folder {folder}"
        if not os.path.isdir(folder):
            raise SourceError(f"image folder not found: {folder}")
        self.paths = sorted(
            os.path.join(folder, n)
            for n in os.listdir(folder)
            if n.lower().endswith(IMAGE_SUFFIXES)
        )
        if not self.paths:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        self.skipped: list[str] = []

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        for path in self.paths:
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                self.skipped.append(path)
                continue
            yield Frame(image=image, index=index, captured_at_ms=now_ms())
            index += 1


class DeepLensSource(FrameSource):
    """The DeepLens camera through awscam (present only on the device's own image)."""

    name = "deeplens camera"

    def __init__(self):
        try:
            import awscam  # noqa: F401  (the DeepLens device runtime)
        except ImportError as exc:
            raise SourceError(
                "the DeepLens camera needs the 'awscam' module, which exists only on an AWS "
                "DeepLens device; use --source with a video file, RTSP URL or webcam elsewhere"
            ) from exc
        self._awscam = awscam

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        failures = 0
        while True:
            ok, image = self._awscam.getLastFrame()
            if not ok or image is None:
                failures += 1
                if failures >= 50:
                    raise SourceError("awscam.getLastFrame failed 50 times in a row")
                time.sleep(0.1)
                continue
            failures = 0
            yield Frame(image=image, index=index, captured_at_ms=now_ms())
            index += 1


def parse_params(text: str) -> dict[str, str]:
    """'faces=12,mood=0.8' -> {'faces': '12', 'mood': '0.8'}."""
    params = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise SourceError(f"synthetic parameter {part!r} must look like name=value")
        key, value = part.split("=", 1)
        params[key.strip()] = value.strip()
    return params


def open_source(spec: str | int, *, loop: bool = False) -> FrameSource:
    """Pick a source from a --source value.

    'deeplens', 'synthetic[:k=v,...]', a webcam index ('0'), a URL ('rtsp://...'), a folder of
    images, or a video file path.
    """
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return VideoSource(int(spec))
    if spec == "deeplens":
        return DeepLensSource()
    if spec == "synthetic" or spec.startswith("synthetic:"):
        from edge_package.synthetic import SyntheticCrowdSource  # lazy: optional portraits

        return SyntheticCrowdSource.from_params(parse_params(spec.partition(":")[2]))
    if os.path.isdir(spec):
        return FolderSource(spec)
    return VideoSource(spec, loop=loop)
