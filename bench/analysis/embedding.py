"""2-D t-SNE maps of feature sets (scikit-learn), with a PCA pre-reduction and a fixed seed."""

from __future__ import annotations

from typing import Any

import numpy as np

#: PCA keeps at most this many dimensions before t-SNE
PCA_DIMS = 50
PERPLEXITY = 30.0
TSNE_SEED = 0


def tsne_params(n: int) -> dict[str, Any]:
    """The embedding's settings for ``n`` samples (stored with the maps); PCA applies above ``pca_dims``."""
    return {"method": "t-SNE (scikit-learn, Barnes-Hut)", "pca_dims": PCA_DIMS,
            "perplexity": min(PERPLEXITY, max((n - 1) / 3, 1.0)), "init": "pca", "seed": TSNE_SEED,
            "scikit-learn": _sklearn_version()}


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def tsne(features: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """N x 2 float32 t-SNE coordinates of ``features``."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    dims = min(params["pca_dims"], len(x))
    if dims < x.shape[1]:
        x = PCA(dims, random_state=params["seed"]).fit_transform(x)
    embedded = TSNE(2, perplexity=params["perplexity"], init=params["init"], learning_rate="auto",
                    random_state=params["seed"]).fit_transform(x)
    return embedded.astype(np.float32)
