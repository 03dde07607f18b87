"""The only place that touches containers and codecs.

- `io`: read any container (rotation, VFR→CFR, exact frame counts), write browser-playable H.264 atomically, mux the
  source audio back over the same span.
- `timing`: exact mapping between source frames and a backend's frame rate / frame-count rules; chunk plans.
- `geometry`: fit frames to a backend's working size (pad or crop) and back, with a notice for the user.

Nothing is imported here so that `import synclora.video.timing` stays free of PyAV and OpenCV.
"""
