"""The capture loop shared by every entry point: frame -> detect -> mask/gate -> throttle -> sink,
and beside it, on every frame, the crowd signals (motion energy, crowd fill, sound level) that go
out once per window in both modes. In face-free mode only the crowd signals run: no face is
detected, cropped or uploaded (the detector is not even loaded).

Only crops the throttle releases are JPEG-encoded (or classified, in edge mode), and the frame
itself is dropped after each iteration: no full frame is ever stored or sent. Every recoverable
problem (a bad frame, a failed upload, a telemetry outage) is counted and reported; the loop goes
on.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque

from edge_package.crop import MaskSet, QualityGate, encode_jpeg, make_crop
from edge_package.crowd import CrowdSignals
from edge_package.detect import FrameShapeError, camera_schedule, check_frame, make_detector
from edge_package.input_health import InputHealth
from edge_package.sinks import Release
from edge_package.sources import SourceError
from edge_package.spool import Spool
from edge_package.telemetry import NullPublisher, TelemetryError, build_payload
from edge_package.tracker import Throttle

log = logging.getLogger("edge_package")


def default_spool_dir(config) -> str:
    from edge_package.config import state_dir

    base = os.environ.get("STAGEPULSE_SPOOL_DIR") or state_dir("spool")
    return config.spool_dir or os.path.join(base, config.device)


SINK_RETRY_S = 30.0


class NullSink:
    """Keeps and sends nothing: what a camera in edge mode runs while it cannot score faces."""

    background = False

    def __init__(self):
        self.refused = 0

    def send(self, release) -> None:
        self.refused += 1

    def stats(self) -> dict:
        return {"uploads": 0, "bytes_sent": 0, "spool_depth": 0, "spool_dropped": self.refused}


def make_signal_sink(config):
    """The crowd signal sink (both modes), or None when the camera has no observations table."""
    if not config.observations_table:
        return None
    from edge_package.sinks import CrowdSignalSink

    folder = default_spool_dir(config).rstrip(os.sep) + "-crowd"
    spool = Spool(folder, int(min(config.spool_max_mb, 20.0) * 1024 * 1024))
    return CrowdSignalSink(config, spool, background=True)


def make_sound(config):
    """The microphone's reader and meter (audio.AudioThread), or None without one."""
    if not config.audio:
        return None
    from edge_package.audio import AudioThread, open_audio

    return AudioThread(open_audio(config.audio))


def make_sink(config, spool: Spool | None = None):
    """The production sink for the configured mode (S3 crops or edge-mode observations)."""
    spool = spool or Spool(default_spool_dir(config), int(config.spool_max_mb * 1024 * 1024))
    if config.mode == "edge":
        from edge_package.sinks import ObservationSink

        return ObservationSink(config, spool, background=True)
    from edge_package.sinks import S3CropSink

    return S3CropSink(config, spool, background=True)


class EdgeRunner:
    def __init__(
        self,
        config,
        *,
        detector=None,
        sink=None,
        signal_sink=None,
        sound=None,
        publisher=None,
        clock=time.monotonic,
        wall_ms=lambda: int(time.time() * 1000),
    ):
        self.config = config
        self.model_choice = None  # set when this runner loads BlazeFace itself (model_store)
        self.detector = detector  # face-free mode loads none (_ensure_detector when it ends)
        if not config.face_free:
            self._ensure_detector()
        self.builds_own_sink = sink is None  # then a pushed mode change swaps it (_switch_sink)
        self._sink_retry_at = 0.0
        self._ending = False  # run() is finishing: a pushed mode change waits for the next start
        self._spool = None  # kept while a NullSink stands in (edge mode that cannot score)
        self.sink = sink if sink is not None else make_sink(config)
        # Crowd signals: a runner given its face sink (tests, tools) sends them only when given
        # a signal sink too; the production runner builds both.
        self.signal_sink = signal_sink
        if signal_sink is None and self.builds_own_sink:
            self.signal_sink = make_signal_sink(config)
            if self.signal_sink is None:
                log.warning("no observations_table in the configuration: no crowd signals sent")
        self.sound = sound if sound is not None else make_sound(config)
        self.crowd = CrowdSignals(config, sound=getattr(self.sound, "meter", None))
        self.signals_sent = 0
        self.publisher = publisher or NullPublisher()
        self.clock = clock
        self.wall_ms = wall_ms
        self._apply_tunables()
        self.frames = 0
        self.faces_detected = 0
        self.masked = 0
        self.rejected: dict[str, int] = {}
        self.errors = 0
        self.last_error = ""
        self.seq = 0
        self._frame_times: deque = deque(maxlen=60)
        self.input_health = InputHealth()
        self._last_telemetry = None
        self._throttle_now = None  # the throttle's time at the last frame (see process_frame)
        self.before_telemetry = None  # hook: e.g. re-read the device runtime's configuration
        self._pushed: queue.SimpleQueue = queue.SimpleQueue()
        self.stop_event = threading.Event()
        if self.model_choice is not None and self.model_choice.problem:
            self.error(self.model_choice.problem)

    def _ensure_detector(self) -> None:
        if self.detector is not None:
            return
        if self.config.detector == "blazeface":
            self.detector = self._load_face_model()
        else:
            self.detector = make_detector(
                self.config.detector, threshold=self.config.detection_threshold
            )
        if self.config.masks and hasattr(self.detector, "set_masks"):
            self.detector.set_masks(self.config.masks)  # loaded after the masks were set

    def _apply_tunables(self) -> None:
        cfg = self.config
        self.masks = MaskSet(cfg.masks)
        self.gate = QualityGate(min_face_px=cfg.min_face_px)
        old = getattr(self, "throttle", None)
        old_masks = getattr(self, "_mask_polygons", None)
        self._mask_polygons = cfg.masks
        self.throttle = Throttle(cfg.throttle_interval_s, cfg.upload_budget_per_min)
        # Keep pending crops across a tunable change, except when the device is paused, face-free
        # or the masks changed: these must also stop crops that were already waiting.
        if old is not None and not cfg.paused and not cfg.face_free and old_masks == cfg.masks:
            self.throttle.tracks = old.tracks
        crowd = getattr(self, "crowd", None)
        if crowd is not None and old_masks != cfg.masks:
            crowd.set_masks(cfg.masks)
        if hasattr(self.detector, "threshold"):
            self.detector.threshold = cfg.detection_threshold
        if old_masks != cfg.masks and hasattr(self.detector, "set_masks"):
            self.detector.set_masks(cfg.masks)  # masked tiles are not even searched
        if cfg.paused and hasattr(self.detector, "reset"):
            self.detector.reset()  # faces held from before the pause are forgotten

    def _load_face_model(self):
        """The rolled-out face model (verified) or the bundled one; see edge_package.model_store."""
        from edge_package.model_store import load_face_detector

        url, sha256 = self.config.face_model
        self.model_choice = load_face_detector(
            url,
            sha256,
            region=self.config.region,
            threshold=self.config.detection_threshold,
            **camera_schedule(self.config.min_face_px),
        )
        return self.model_choice.detector

    def update_tunables(self, **changes) -> None:
        """Apply settings pushed from the service (pause, thresholds, masks) without a restart."""
        old_model, old_mode = self.config.face_model, self.config.mode
        old_min_face = self.config.min_face_px
        was_face_free = self.config.face_free
        self.config = self.config.with_tunables(**changes)
        self.crowd.config = self.config
        if self.config.face_free and not was_face_free:
            self._enter_face_free()
        elif was_face_free and not self.config.face_free:
            self._ensure_detector()  # faces again: load the detector face-free mode never ran
        searched_again = self.config.min_face_px != old_min_face  # the tile schedule follows it
        if self.model_choice is not None and (
            self.config.face_model != old_model or searched_again
        ):
            if self.config.face_free:
                self.detector = None  # loaded when face-free mode ends
            else:
                self.detector = self._load_face_model()  # a new model rolled out (or back)
            if self.model_choice.problem:
                self.error(self.model_choice.problem)
        self._apply_tunables()
        if self.config.mode != old_mode and self.builds_own_sink and not self._ending:
            self._switch_sink()

    def _enter_face_free(self) -> None:
        """Face-free mode switched on: the crops and scores still waiting for upload are deleted,
        never sent (an upload already on the wire cannot be called back); the throttle's pending
        crops go with _apply_tunables."""
        spool = getattr(self.sink, "spool", None) or self._spool
        if spool is not None:
            deleted = spool.clear()
            if deleted:
                log.info("face-free mode: %d waiting face items deleted, never sent", deleted)

    def _switch_sink(self) -> None:
        """The analysis mode changed on the service (a festival switched to edge mode, say): from
        the next crop on, send what the new mode sends. Switching to edge mode first stops and
        deletes the crops still waiting (the uploader sends none of them), so no face image leaves
        the camera after the switch, even if the scoring sink cannot be built: then the camera
        keeps no crops at all (NullSink) and retries every SINK_RETRY_S. Switching back to cloud
        mode sends what the link allows of the waiting scores and reports the rest as dropped."""
        old = self.sink
        spool = getattr(old, "spool", None) or getattr(self, "_spool", None)
        if self.config.mode == "edge":
            if hasattr(old, "abandon"):
                old.abandon()  # first, so the uploader sends none of the crops it may hold
            if spool is not None:
                deleted = spool.clear()
                if deleted:
                    log.info("edge mode: %d crops waiting for upload deleted, never sent", deleted)
        try:
            new = make_sink(self.config, spool)
        except Exception as exc:  # noqa: BLE001 - a model or library missing on this camera
            if self.config.mode != "edge":  # cloud wanted: keep scoring on the camera meanwhile
                self.error(f"cannot switch to cloud mode ({exc}); still sending scores")
                return
            self._stop_sink(old)
            self.sink, self._spool = NullSink(), spool
            self._sink_retry_at = self.clock() + SINK_RETRY_S
            self.error(f"edge mode: cannot score on the camera ({exc}); no crop is kept or sent")
            return
        self._stop_sink(old)
        if spool is not None and spool.depth:  # scores the link could not take before the switch
            self.error(f"{spool.clear()} unsent scores dropped at the switch to cloud mode")
        self.sink = new
        if hasattr(new, "start"):
            new.start()

    @staticmethod
    def _stop_sink(sink) -> None:
        if getattr(sink, "background", False):
            sink.stop()
        elif hasattr(sink, "pump"):
            sink.pump(max_items=64)

    def push_tunables(self, tunables: dict, origin: str) -> None:
        """Thread-safe hand-over of settings from another thread (a DeepLens shadow delta): the
        capture thread applies them between frames, never in the middle of one."""
        self._pushed.put((dict(tunables), origin))

    def take_pushed(self) -> dict:
        """Settings handed over but not applied yet (the runner is going away): merged, newest
        last, for the next runner."""
        merged: dict = {}
        while True:
            try:
                tunables, _ = self._pushed.get_nowait()
            except queue.Empty:
                return merged
            merged.update(tunables)

    def _apply_pushed_queue(self) -> None:
        from edge_package.shadow import apply_pushed

        while True:
            try:
                tunables, origin = self._pushed.get_nowait()
            except queue.Empty:
                return
            apply_pushed(self, tunables, origin)

    def error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message[:500]
        log.warning("%s", message)

    @property
    def fps(self) -> float:
        if len(self._frame_times) < 2:
            return 0.0
        span = self._frame_times[-1] - self._frame_times[0]
        return (len(self._frame_times) - 1) / span if span > 0 else 0.0

    def process_frame(self, frame, now: float | None = None) -> list[Release]:
        """Detect, gate and throttle one frame; returns the releases sent to the sink."""
        now = self.clock() if now is None else now
        self.frames += 1
        self._frame_times.append(now)
        # A video file is throttled on its own timeline: how fast this machine plays it must not
        # change which crops are sent. Live sources have no such timeline: the clock is theirs.
        media_s = getattr(frame, "media_s", None)
        throttle_now = now if media_s is None else media_s
        if self._throttle_now is not None and throttle_now < self._throttle_now:
            self.throttle.new_timeline()
            if hasattr(self.detector, "reset"):
                self.detector.reset()  # another file: faces held from the last one are not here
        self._throttle_now = throttle_now
        if self.config.paused:
            self.input_health.reset()
            self.crowd.reset()
            return []  # privacy switch: the frame is not even looked at
        image = frame.image
        try:
            self.input_health.update(image, throttle_now)
        except Exception as exc:  # noqa: BLE001 - a health figure must never cost a frame
            self.error(f"input health of frame {frame.index}: {exc}")
        try:
            check_frame(image)  # one clear error for a bad frame, before anything reads it
        except FrameShapeError as exc:
            self.error(f"frame {frame.index} skipped: {exc}")
            return []
        try:
            self._send_signals(self.crowd.update(image, throttle_now, frame.captured_at_ms))
        except Exception as exc:  # noqa: BLE001 - nor may the crowd signal
            self.error(f"crowd signal of frame {frame.index}: {exc}")
        if self.config.face_free:
            return []  # face-free: no detector runs, no face is cropped or sent
        self._ensure_detector()
        try:
            detections = self.detector.detect(image)
        except FrameShapeError as exc:
            self.error(f"frame {frame.index} skipped: {exc}")
            return []
        height, width = image.shape[:2]
        self.faces_detected += sum(1 for d in detections if not getattr(d, "held", False))
        candidates = []
        masked = 0
        for det in detections:
            if self.masks and self.masks.covers(det, width, height):
                self.masked += 1
                masked += 1
                continue  # privacy: a masked face is never cropped
            if getattr(det, "held", False):
                # Held between fine-tile visits: keeps its track (so it is not a new person when
                # seen again) but no crop is cut where the face was last seen.
                candidates.append((det.box, -1.0, None))
                continue
            crop, reason = make_crop(image, det, margin=self.config.crop_margin, gate=self.gate)
            if crop is None:
                self.rejected[reason] = self.rejected.get(reason, 0) + 1
                # Still tracked, so a blurry frame does not look like a new person.
                candidates.append((det.box, -1.0, None))
                continue
            candidates.append((det.box, crop.sharpness, (crop, frame.captured_at_ms)))
        self._send_signals(self.crowd.faces(len(detections) - masked, frame.captured_at_ms))
        releases = []
        for _, (crop, captured_at_ms) in self.throttle.update(self._throttle_now, candidates):
            releases.append(self._release(crop, captured_at_ms))
        return releases

    def _send_signals(self, items: list[dict]) -> None:
        for item in items:
            if self.signal_sink is None:
                continue
            try:
                self.signal_sink.send(item)
                self.signals_sent += 1
            except Exception as exc:  # noqa: BLE001 - a sink bug must not stop the camera
                self.error(f"crowd signal sink failed: {exc}")

    def _release(self, crop, captured_at_ms: int) -> Release:
        self.seq += 1
        release = Release(
            image=crop.image,
            jpeg=encode_jpeg(crop.image, self.config.jpeg_quality),
            captured_at_ms=captured_at_ms,
            seq=self.seq,
            score=crop.detection.score,
            box=crop.detection.box,
            comparison=self.config.comparison_for(captured_at_ms, self.seq),
        )
        try:
            self.sink.send(release)
        except Exception as exc:  # a sink bug must not stop the camera; it is reported
            self.error(f"sink failed: {exc}")
        return release

    def flush(self, now: float | None = None) -> list[Release]:
        """Release every pending best crop now (shutdown): nothing waiting in a window is lost.

        Without `now`, on the timeline the throttle ran on (a file's media time, else the clock)."""
        if now is None:
            now = self._throttle_now if self._throttle_now is not None else self.clock()
        self._send_signals(self.crowd.close())  # the window in progress, as far as it got
        return [self._release(crop, ms) for _, (crop, ms) in self.throttle.flush(now)]

    def counters(self) -> dict:
        stats = dict(self.sink.stats()) if hasattr(self.sink, "stats") else {}
        last_error = getattr(self.sink, "last_error", "") or self.last_error
        spool = getattr(self.sink, "spool", None)
        if spool is not None and spool.last_error:
            last_error = spool.last_error
        signals = self.signal_sink.stats() if hasattr(self.signal_sink, "stats") else {}
        for key in ("spool_depth", "spool_dropped", "errors"):
            stats[key] = stats.get(key, 0) + signals.get(key, 0)
        if self.config.face_free:  # what a face-free camera uploads (the upload-gap alert)
            for key in ("uploads", "bytes_sent"):
                stats[key] = stats.get(key, 0) + signals.get(key, 0)
        last_error = last_error or getattr(self.signal_sink, "last_error", "")
        sound_error = getattr(self.sound, "last_error", "")
        meter = getattr(self.sound, "meter", None)
        return {
            "fps": self.fps,
            "frames": self.frames,
            "faces_detected": self.faces_detected,
            **stats,
            "errors": self.errors + stats.get("errors", 0),
            "last_error": last_error or sound_error,
            **self.input_health.stats(),
            "motion_energy": self.crowd.last_energy,
            "crowd_fill": self.crowd.last_fill,
            "sound_level_dbfs": meter.latest if meter is not None else None,
            "face_free": bool(self.config.face_free),
        }

    def telemetry(self) -> dict:
        payload = build_payload(
            device=self.config.device,
            mode=self.config.mode,
            counters=self.counters(),
            paused=self.config.paused,
            sent_at_ms=self.wall_ms(),
        )
        try:
            answer = self.publisher.publish(payload)
        except TelemetryError as exc:
            self.error(str(exc))
            return payload
        if isinstance(answer, dict) and isinstance(answer.get("desired"), dict):
            from edge_package.shadow import apply_pushed  # settings changed on the service

            apply_pushed(self, answer["desired"], "service")
        return payload

    def tick(self, now: float) -> None:
        """Housekeeping between frames: apply pushed settings, drain the spool, send telemetry
        when it is due."""
        self._apply_pushed_queue()
        if isinstance(self.sink, NullSink) and self.builds_own_sink and now >= self._sink_retry_at:
            self._switch_sink()  # edge mode could not score: try again
        for sink in (self.sink, self.signal_sink):
            if hasattr(sink, "pump") and not getattr(sink, "background", False):
                sink.pump()
        if self._last_telemetry is None or now - self._last_telemetry >= (
            self.config.telemetry_interval_s
        ):
            self._last_telemetry = now
            if self.before_telemetry is not None:
                self.before_telemetry()
            self.telemetry()

    def run(self, source, *, max_frames=None, duration_s=None, status=None, status_every_s=1.0):
        """Run until the source ends, max_frames/duration_s is reached or stop() is called."""
        started = self.clock()
        last_status = started
        self._ending = False
        if hasattr(self.sink, "start"):
            self.sink.start()
        for helper in (self.signal_sink, self.sound):
            if hasattr(helper, "start"):
                helper.start()
        try:
            iterator = iter(source)
            while not self.stop_event.is_set():
                loop_start = self.clock()
                if duration_s is not None and loop_start - started >= duration_s:
                    break
                if max_frames is not None and self.frames >= max_frames:
                    break
                try:
                    frame = next(iterator)
                except StopIteration:
                    log.info("%s ended", getattr(source, "name", "source"))
                    break
                except SourceError as exc:
                    self.error(str(exc))
                    break
                self.process_frame(frame, loop_start)
                del frame  # the frame never outlives its iteration
                now = self.clock()
                self.tick(now)
                if status and now - last_status >= status_every_s:
                    last_status = now
                    status(self.counters())
                spare = 1.0 / self.config.fps_cap - (self.clock() - loop_start)  # may be pushed
                if spare > 0:
                    self.stop_event.wait(spare)
        finally:
            self._ending = True
            self.flush()
            for sink in (self.sink, self.signal_sink):
                if getattr(sink, "background", False):
                    sink.stop()  # drains what the link allows; the rest stays spooled
                elif hasattr(sink, "pump"):
                    sink.pump(max_items=64)
            if self.sound is not None:
                self.sound.stop()
            self.telemetry()
            close = getattr(source, "close", None)
            if close:
                close()
        return self.counters()

    def stop(self) -> None:
        self.stop_event.set()
