"""Small real models built from data that ships inside packages (nothing is downloaded).

Used by the demo seed and by the tests."""
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def digits_dataset() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    return features.astype(np.float32), labels


@lru_cache(maxsize=1)
def digits_classifier_onnx() -> bytes:
    """scikit-learn's 8x8 digits, a logistic regression, converted with skl2onnx.

    Input X: FP32 [-1, 64]; outputs label: INT64 [-1] and probabilities: FP32 [-1, 10]."""
    from sklearn.linear_model import LogisticRegression
    from skl2onnx import to_onnx

    features, labels = digits_dataset()
    classifier = LogisticRegression(max_iter=2000).fit(features, labels)
    onnx_model = to_onnx(classifier, features[:1], options={id(classifier): {"zipmap": False}}, target_opset=17)
    return onnx_model.SerializeToString()
