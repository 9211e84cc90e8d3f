"""Evaluation metrics (numpy): ROC AUC and log loss of click probabilities."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def auc_logloss(labels: np.ndarray, probs: np.ndarray) -> dict[str, float | None]:
    """AUC (None when only one class is present) and mean log loss, probabilities clipped to [1e-7, 1-1e-7]."""
    labels = np.asarray(labels).astype(np.int64)
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    if len(labels) == 0:
        return {"auc": None, "logloss": None}
    auc = float(roc_auc_score(labels, probs)) if len(np.unique(labels)) == 2 else None
    return {"auc": auc, "logloss": float(log_loss(labels, probs, labels=[0, 1]))}
