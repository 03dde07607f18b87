"""The face mesh: MediaPipe's landmark tracker (`mesh`) and the named parts of its 478-point topology (`parts`).

Below metrics (the sync report), propagate (the CPU preview's face guidance) and testing, which all read faces.
"""
