"""The only place that touches containers and codecs.

- `io`: the API the package uses — read any container (rotation, VFR→CFR, exact frame counts), write
  browser-playable H.264 atomically, mux the source audio back over the same span. Behind it, one concern per module:
  `probe` (facts and the exact timeline), `decode` (frames), `colour` (Y'CbCr↔RGB), `audio`, `encode`, `compose`
  (side by side) and `container` (opening files).
- `timing`: exact mapping between source frames and a backend's frame rate / frame-count rules; chunk plans.
- `geometry`: fit frames to a backend's working size (pad or crop) and back, with a notice for the user.

Nothing is imported here so that `import synclora.video.timing` stays free of PyAV and OpenCV.
"""
