"""A model file that passes the quick check but whose factory fails when the app builds it."""


def build_model():
    raise RuntimeError("checkpoint weights.pt is missing")


def calibration_batches():
    return []
