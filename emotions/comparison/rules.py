"""The recommendation of a comparison run: plain rules over its measured figures, written once
here and in docs/comparison.md ("How the recommendation is made"). Pure functions, no Django."""

from __future__ import annotations

# Fewer pairs with both readings than this: no verdict on agreement (a few dozen faces say little).
MIN_PAIRS = 30
# Edge mode is recommended when the camera's model picks Rekognition's top expression this often
# and the per-minute vibe of both moves together at least this much (when there are minutes
# enough to correlate)...
AGREEMENT_FOR_EDGE = 0.60
CORRELATION_FOR_EDGE = 0.70
# ...unless Rekognition finds no face in this share of the camera's crops or more: in edge mode
# those crops would be scored as faces, so the numbers would carry that noise.
NO_FACE_SHARE_FOR_CLOUD = 0.25


def _pct(value: float) -> str:
    return f"{100 * value:.0f} %"


def _traffic_reasons(figures: dict) -> list[str]:
    reasons = []
    per_face = figures.get("bytes_per_face") or {}
    cloud, edge = per_face.get("cloud"), per_face.get("edge")
    if cloud and edge:
        reasons.append(
            f"A face costs {cloud / 1000:.1f} kB of upload in cloud mode (the crop) and "
            f"{edge / 1000:.2f} kB in edge mode (the scores): edge mode sends "
            f"{_pct(1 - edge / cloud)} fewer bytes."
        )
    latency = figures.get("latency") or {}
    cloud_p50 = (latency.get("cloud") or {}).get("p50_s")
    edge_p50 = (latency.get("edge") or {}).get("p50_s")
    if cloud_p50 is not None and edge_p50 is not None:
        faster = "edge" if edge_p50 < cloud_p50 else "cloud"
        reasons.append(
            f"Capture to visible (median): {cloud_p50:.1f} s in cloud mode, {edge_p50:.1f} s in "
            f"edge mode ({faster} mode is quicker)."
        )
    elif cloud_p50 is not None or edge_p50 is not None:
        missing = "edge" if edge_p50 is None else "cloud"
        reasons.append(f"No camera of this run was in {missing} mode: its latency is not measured.")
    cost = figures.get("projected_cost_usd_per_hour")
    if cost is not None:
        shown = f"{cost:.2f}" if cost >= 0.1 else f"{cost:.4f}"
        reasons.append(f"Rekognition for these cameras in cloud mode: about ${shown} an hour.")
    return reasons


def recommend(figures: dict) -> dict:
    """{"verdict": "edge" | "cloud" | "undecided", "headline": ..., "reasons": [...]}.

    `figures`: pairs_both, agreement (0..1 or None), correlation (or None), no_face_share (share
    of pairs with both readings where Rekognition saw no face), bytes_per_face, latency,
    projected_cost_usd_per_hour, rekognition_available."""
    traffic = _traffic_reasons(figures)
    if not figures.get("rekognition_available"):
        return {
            "verdict": "undecided",
            "headline": (
                "Agreement needs Rekognition: this run had no Rekognition, so it cannot say "
                "whether the camera's model reads this crowd as well. Bandwidth and latency below "
                "are measured."
            ),
            "reasons": traffic,
        }
    pairs = figures.get("pairs_both") or 0
    if pairs < MIN_PAIRS:
        return {
            "verdict": "undecided",
            "headline": (
                f"Too few faces read by both backends ({pairs}; at least {MIN_PAIRS} are needed): "
                "run longer or with a higher sample rate."
            ),
            "reasons": traffic,
        }
    agreement = figures.get("agreement") or 0.0
    correlation = figures.get("correlation")
    no_face = figures.get("no_face_share") or 0.0
    said = f"The camera's model agreed with Rekognition on the top expression of {_pct(agreement)}"
    said += f" of {pairs} faces"
    if correlation is not None:
        said += f"; the per-minute vibe of both correlates at r = {correlation:.2f}"
    said += "."
    if no_face >= NO_FACE_SHARE_FOR_CLOUD:
        return {
            "verdict": "cloud",
            "headline": (
                f"Cloud mode: Rekognition found no face in {_pct(no_face)} of the camera's crops; "
                "in edge mode they would be counted as faces."
            ),
            "reasons": [said, *traffic],
        }
    corr_ok = correlation is None or correlation >= CORRELATION_FOR_EDGE
    if agreement >= AGREEMENT_FOR_EDGE and corr_ok:
        return {
            "verdict": "edge",
            "headline": (
                "Edge mode: the camera's model reads this crowd much like Rekognition, and no "
                "crop leaves the cameras."
            ),
            "reasons": [said, *traffic],
        }
    return {
        "verdict": "cloud",
        "headline": "Cloud mode: the camera's model and Rekognition read this crowd differently.",
        "reasons": [said, *traffic],
    }
