"""A synthetic crowd with ground truth, built from public-domain portraits in installed packages.

Used by tests, the benchmark and the demo's simulated cameras, so the real edge code can run with
known faces. scikit-image (astronaut, camera) and matplotlib (grace_hopper) are optional on devices:
they are imported only here. `mood` is the fraction of smiling faces: the astronaut smiles; Grace
Hopper and the cameraman do not (fer scores them CALM and SAD).

The crowd also moves: `dance` (0..1) is how hard it dances, `bpm` its rhythm. Each person bounces
on the beat and sways on every other beat, with their own phase, tempo drift and keenness, so a
camera at any frame rate sees the motion (a pure 2 Hz bounce would alias away at 2 fps). Stage
`lighting` adds strobes and colour washes over the picture ("strobe", "wash", or "show":
episodes of both, as on a night stage), and `noise` sensor noise: what the motion meter must not
read as dancing (edge_package.motion).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from edge_package.sources import Frame, FrameSource, SourceError

# Face boxes (x, y, w, h) in each portrait, as BlazeFace finds them at full resolution.
PORTRAIT_FACES = {
    "astronaut": (174, 70, 105, 105),
    "grace_hopper": (159, 118, 211, 211),
    "camera": (205, 124, 69, 69),
}
SMILING = ("astronaut",)
NOT_SMILING = ("grace_hopper", "camera")
LIGHTING = ("none", "strobe", "wash", "show")
# Per person, as a share of the face size at dance=1: the beat's bounce (up and down) and the
# sway over two beats (side to side).
BOUNCE = 0.35
SWAY = 0.45
STROBE_HZ = 6.0  # flashes per second
STROBE_DUTY = 0.3  # share of each flash period the light is on
WASH_PERIOD_S = 4.0  # a colour wash turns once round the hues in this time
SHOW_CYCLE_S = 60.0  # "show": 20 s plain, 15 s strobe, 10 s plain, 15 s colour wash
SHOW_EPISODES = ((20.0, "none"), (35.0, "strobe"), (45.0, "none"), (60.0, "wash"))


@dataclass(frozen=True)
class Portrait:
    name: str
    head: np.ndarray  # BGR patch around the face
    alpha: np.ndarray  # float32 0..1 soft ellipse, same size as head
    face: tuple[int, int, int, int]  # face box inside the head patch


def _load_image(name: str) -> np.ndarray:
    try:
        if name == "grace_hopper":
            import matplotlib.cbook as cbook

            path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        else:
            from skimage import data as sk_data

            image = np.asarray(getattr(sk_data, name)())
            code = cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR
            image = cv2.cvtColor(image, code)
    except ImportError as exc:
        raise SourceError(
            f"the synthetic crowd needs scikit-image and matplotlib for the {name!r} portrait"
        ) from exc
    if image is None:
        raise SourceError(f"portrait {name!r} could not be read")
    return image


@lru_cache(maxsize=None)  # functools.cache is 3.9+
def portrait(name: str) -> Portrait:
    """Head-and-hair patch (face box grown by 60 %) with a feathered elliptical alpha."""
    image = _load_image(name)
    x, y, w, h = PORTRAIT_FACES[name]
    grow = 0.6
    x0, y0 = max(0, int(x - grow * w)), max(0, int(y - grow * h))
    x1, y1 = min(image.shape[1], int(x + w + grow * w)), min(image.shape[0], int(y + h + grow * h))
    head = image[y0:y1, x0:x1].copy()
    hh, hw = head.shape[:2]
    alpha = np.zeros((hh, hw), np.float32)
    centre = (x - x0 + w // 2, y - y0 + h // 2)
    cv2.ellipse(alpha, centre, (int(w * 0.85), int(h * 1.05)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(2.0, w * 0.08))
    return Portrait(name, head, alpha, (x - x0, y - y0, w, h))


@dataclass
class CrowdFace:
    """One synthetic person: which portrait, how it is varied, where it is and when it is seen."""

    face_id: int
    portrait: str
    size: int  # face width in frame pixels
    x: float  # face box top-left
    y: float
    vx: float  # drift in px per frame
    vy: float
    flip: bool
    brightness: float
    blur: float
    occlusion: float  # fraction of the face's lower part hidden (a raised hand, a cup)
    enters: int
    leaves: int
    phase: float = 0.0  # 0..1 of a two-beat cycle
    tempo: float = 1.0  # this person's drift off the beat (~ +-4 %)
    keen: float = 1.0  # how much harder or softer than the crowd this person dances
    _sprite: tuple | None = None

    def dance_offset(self, t: float, dance: float, bpm: float) -> tuple[float, float]:
        """(dx, dy) in pixels at time t: a bounce on each beat and a sway over two beats."""
        if dance <= 0:
            return 0.0, 0.0
        amplitude = dance * self.keen * self.size
        angle = math.pi * (bpm / 60.0) * self.tempo * t + 2 * math.pi * self.phase
        return SWAY * amplitude * math.sin(angle), -BOUNCE * amplitude * abs(math.sin(angle))

    def sprite(self):
        """Pre-scaled head, alpha and face offset; built once since size never changes."""
        if self._sprite is None:
            p = portrait(self.portrait)
            scale = self.size / p.face[2]
            head = cv2.resize(p.head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            alpha = cv2.resize(p.alpha, (head.shape[1], head.shape[0]))
            if self.flip:
                head, alpha = head[:, ::-1], alpha[:, ::-1]
                fx = head.shape[1] - (p.face[0] + p.face[2]) * scale
            else:
                fx = p.face[0] * scale
            head = np.clip(head.astype(np.float32) * self.brightness, 0, 255)
            if self.blur > 0:
                head = cv2.GaussianBlur(head, (0, 0), self.blur)
            if self.occlusion > 0:
                top = int(p.face[1] * scale + self.size * (1 - self.occlusion))
                head[top : int(p.face[1] * scale + self.size * 1.1)] = (40, 60, 70)
            self._sprite = (head, alpha[..., None], fx, p.face[1] * scale)
        return self._sprite


def make_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A dim festival-like scene: gradient, coloured light blobs and noise; no faces. In float32,
    the noise from OpenCV's generator seeded from `rng` (a fifth of the float64 numpy version's
    cost: ~50 ms at 1080p, which every simulated camera and test scene pays once)."""
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    column = np.float32([60, 30, 35]) * (1 - ys) + np.float32([25, 20, 30]) * ys
    base = np.repeat(column[:, None, :], width, axis=1)
    small = rng.random((height // 40 + 1, width // 40 + 1, 3)).astype(np.float32) * 90
    base += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = np.empty_like(base)
    cv2.setRNGSeed(int(rng.integers(2**31)))
    cv2.randn(grain, (0.0, 0.0, 0.0), (6.0, 6.0, 6.0))
    base += grain
    return np.clip(base, 0, 255).astype(np.uint8)


class SyntheticCrowdSource(FrameSource):
    """Frames with `faces` people at once, sized min_face..max_face px, a `mood` share smiling.

    People stay `dwell` frames on average and are replaced when they leave, so long runs exercise
    tracker and throttle. Frame.truth lists (face_id, x, y, w, h) of every face in that frame.
    """

    name = "synthetic crowd"

    def __init__(
        self,
        *,
        width: int = 1920,
        height: int = 1080,
        faces: int = 12,
        mood: float = 0.5,
        min_face: int = 48,
        max_face: int = 160,
        frames: int | None = None,
        dwell: int = 300,
        fps: float = 0.0,
        seed: int = 0,
        occlusion: float = 0.3,
        blur: float = 0.3,
        dance: float = 0.0,
        bpm: float = 120.0,
        lighting: str = "none",
        noise: float = 0.0,
        drift: float = 1.0,
    ):
        if not 0.0 <= mood <= 1.0:
            raise SourceError(f"mood must be within 0..1 (share of smiling faces), got {mood}")
        if not 0.0 <= dance <= 1.0:
            raise SourceError(f"dance must be within 0..1 (how hard the crowd dances), got {dance}")
        if not 20.0 <= bpm <= 300.0:
            raise SourceError(f"bpm must be within 20..300, got {bpm}")
        if lighting not in LIGHTING:
            raise SourceError(f"lighting must be one of {', '.join(LIGHTING)}, got {lighting!r}")
        if not 0.0 <= noise <= 50.0:
            raise SourceError(f"noise must be within 0..50 (grey levels), got {noise}")
        self.dance, self.bpm, self.lighting, self.noise = dance, bpm, lighting, noise
        self.drift = drift  # 0: people stay where they are (a still crowd, for the lights tests)
        self._noise_seed = seed + 7
        self._t0 = time.monotonic()
        if faces < 0 or min_face < 8 or max_face < min_face:
            raise SourceError("faces must be >= 0 and 8 <= min_face <= max_face")
        self.width, self.height = width, height
        self.faces, self.mood = faces, mood
        self.min_face, self.max_face = min_face, max_face
        self.frames, self.dwell, self.fps = frames, dwell, fps
        self.occlusion_share, self.blur_share = occlusion, blur
        self.rng = random.Random(seed)
        self._dance_rng = random.Random(seed + 1_000_003)
        self.background = make_background(width, height, np.random.default_rng(seed))
        self._next_id = 0
        self.crowd: list[CrowdFace] = []
        cols = max(1, round((faces * width / height) ** 0.5))
        rows = max(1, -(-faces // cols))
        self._cells = [(c, r) for r in range(rows) for c in range(cols)][:faces]
        self._grid = (cols, rows)
        for cell in self._cells:
            self.crowd.append(self._spawn(cell, 0, first=True))

    @classmethod
    def from_params(cls, params: dict[str, str]) -> SyntheticCrowdSource:
        """Build from --source synthetic:faces=12,mood=0.8,... (see the class for the names)."""
        types = {
            "width": int,
            "height": int,
            "faces": int,
            "mood": float,
            "min_face": int,
            "max_face": int,
            "frames": int,
            "dwell": int,
            "fps": float,
            "seed": int,
            "occlusion": float,
            "blur": float,
            "dance": float,
            "bpm": float,
            "lighting": str,
            "noise": float,
            "drift": float,
        }
        kwargs = {}
        for key, value in params.items():
            if key not in types:
                raise SourceError(f"unknown synthetic parameter {key!r}; known: {', '.join(types)}")
            try:
                kwargs[key] = types[key](value)
            except ValueError as exc:
                raise SourceError(f"synthetic parameter {key}={value!r} is not a number") from exc
        return cls(**kwargs)

    def _spawn(self, cell, frame: int, first: bool = False) -> CrowdFace:
        rng = self.rng
        cols, rows = self._grid
        cw, ch = self.width / cols, self.height / rows
        size = int(rng.uniform(self.min_face, min(self.max_face, 0.8 * min(cw, ch) / 1.6)))
        size = max(size, self.min_face)
        pad = 0.35 * size  # keep hair/neck of neighbours apart
        x = cell[0] * cw + rng.uniform(pad, max(pad, cw - size - pad))
        y = cell[1] * ch + rng.uniform(pad, max(pad, ch - size - pad))
        smiling = rng.random() < self.mood
        name = rng.choice(SMILING if smiling else NOT_SMILING)
        dwell = int(self.dwell * rng.uniform(0.6, 1.4))
        enters = frame - (rng.randrange(dwell) if first else 0)
        face = CrowdFace(
            face_id=self._next_id,
            portrait=name,
            size=size,
            x=x,
            y=y,
            vx=rng.uniform(-0.1, 0.1) * self.drift,
            vy=rng.uniform(-0.05, 0.05) * self.drift,
            flip=rng.random() < 0.5,
            brightness=rng.uniform(0.7, 1.25),
            blur=rng.uniform(0.5, 1.2) if rng.random() < self.blur_share else 0.0,
            # The cameraman's camera already hides part of his face: no second occluder for him.
            occlusion=(
                rng.uniform(0.1, 0.2)
                if name != "camera" and rng.random() < self.occlusion_share
                else 0.0
            ),
            enters=enters,
            leaves=enters + dwell,
            # their own generator: the crowd's other draws stay what they were before dancing
            phase=self._dance_rng.random(),
            tempo=self._dance_rng.uniform(0.96, 1.04),
            keen=self._dance_rng.uniform(0.6, 1.4),
        )
        self._next_id += 1
        return face

    def time_of(self, index: int) -> float:
        """Seconds into the scene: the frame's place at `fps`, else the wall clock (a live demo
        camera paced by the runner, whose crowd must move in real time)."""
        return index / self.fps if self.fps > 0 else time.monotonic() - self._t0

    def lighting_at(self, t: float) -> str:
        if self.lighting != "show":
            return self.lighting
        into = t % SHOW_CYCLE_S
        return next(kind for end, kind in SHOW_EPISODES if into < end)

    def render(self, index: int) -> Frame:
        """Frame `index` (advance in order: people leave and are replaced as time passes)."""
        image = self.background.copy()
        truth = []
        t = self.time_of(index)
        for slot, face in enumerate(self.crowd):
            if index >= face.leaves:
                face = self.crowd[slot] = self._spawn(self._cells[slot], index)
            head, alpha, fx, fy = face.sprite()
            age = index - face.enters
            dx, dy = face.dance_offset(t, self.dance, self.bpm)
            x = face.x + face.vx * age + dx
            y = face.y + face.vy * age + dy
            ox, oy = int(round(x - fx)), int(round(y - fy))
            hh, hw = head.shape[:2]
            x0, y0 = max(ox, 0), max(oy, 0)
            x1, y1 = min(ox + hw, self.width), min(oy + hh, self.height)
            if x1 <= x0 or y1 <= y0:
                continue
            patch = image[y0:y1, x0:x1].astype(np.float32)
            a = alpha[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            h = head[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            image[y0:y1, x0:x1] = (h * a + patch * (1 - a)).astype(np.uint8)
            bx0, by0 = max(0.0, x), max(0.0, y)
            bx1, by1 = min(self.width, x + face.size), min(self.height, y + face.size)
            if bx1 > bx0 and by1 > by0:
                truth.append((face.face_id, bx0, by0, bx1 - bx0, by1 - by0))
        image = self._light(image, t, index)
        return Frame(image=image, index=index, captured_at_ms=int(time.time() * 1000), truth=truth)

    def _light(self, image: np.ndarray, t: float, index: int) -> np.ndarray:
        """The stage lights over the scene, then sensor noise. A strobe flash multiplies and
        lifts the whole frame (clipping the highlights); a colour wash turns each channel's gain
        round the hues, brightest in a spot that wanders across the crowd."""
        kind = self.lighting_at(t)
        if kind == "strobe" and (t * STROBE_HZ) % 1.0 < STROBE_DUTY:
            image = cv2.convertScaleAbs(image, alpha=2.2, beta=40)
        elif kind == "wash":
            turn = 2 * math.pi * t / WASH_PERIOD_S
            gains = [
                0.25 + 0.85 * max(0.0, math.sin(turn + k * 2 * math.pi / 3)) for k in (2, 1, 0)
            ]
            spot = self._spot(t)
            image = np.clip(image * (spot[..., None] * np.float32(gains)), 0, 255).astype(np.uint8)
        if self.noise > 0:
            # One grey grain per pixel from OpenCV's normal generator (a quarter of numpy's cost:
            # ~4 ms against ~18 at 1080p, which a demo camera pays per frame), seeded per frame
            # from the source's seed and the frame's index (OpenCV's generator is per thread), so
            # a frame is the same pixels whatever else ran; added with OpenCV's saturating add.
            grain = np.empty(image.shape[:2], np.float32)
            cv2.setRNGSeed((self._noise_seed * 1_000_003 + index) % 2**31)
            cv2.randn(grain, 0.0, self.noise)
            image = cv2.add(image, cv2.cvtColor(grain, cv2.COLOR_GRAY2BGR), dtype=cv2.CV_8U)
        return image

    def _spot(self, t: float) -> np.ndarray:
        """A smooth light field (0.5..1.5) with its brightest spot wandering over the frame."""
        gw, gh = 32, 18
        cx = 0.5 + 0.35 * math.sin(2 * math.pi * t / 7.0)
        cy = 0.5 + 0.3 * math.cos(2 * math.pi * t / 5.0)
        xs = (np.arange(gw, dtype=np.float32) + 0.5) / gw - cx
        ys = (np.arange(gh, dtype=np.float32) + 0.5) / gh - cy
        field = 0.5 + np.exp(-(xs[None, :] ** 2 + ys[:, None] ** 2) / 0.08)
        return cv2.resize(field, (self.width, self.height), interpolation=cv2.INTER_LINEAR)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while self.frames is None or index < self.frames:
            started = time.monotonic()
            yield self.render(index)
            index += 1
            if self.fps > 0:
                time.sleep(max(0.0, 1.0 / self.fps - (time.monotonic() - started)))
