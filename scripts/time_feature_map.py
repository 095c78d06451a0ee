"""Time the feature map's UMAP against its PCA fallback on demo-family's shape: 13,312 decoder rows
(models A and B: 512 + 2048 + 4096 each) of 512 neurons, noisy copies like a family's.

    pip install 'superpos[map]'; python scripts/time_feature_map.py

Measured 2026-12 on the shared 2-core CPU of the development machine (load ~10): importing umap
137 s, UMAP 482 s wall (the whole script 83 CPU-seconds by ps: numba compiling, the neighbour
search), PCA 24 s wall under the same load. The reason the map is PCA unless the extra is installed
(superpos_app/panes/feature_map.py says so).
"""
import time
import numpy as np
t0 = time.perf_counter()
import umap  # noqa
t_import = time.perf_counter() - t0
from engine.analysis.feature_map import embed_decoders
rng = np.random.default_rng(0)
base = rng.standard_normal((512, 512)).astype(np.float32)
decs = []
for n in (512, 2048, 4096, 512, 2048, 4096):
    decs.append(base[rng.integers(0, 512, n)] + 0.6 * rng.standard_normal((n, 512)).astype(np.float32))
t0 = time.perf_counter()
xy, member, unit, method = embed_decoders(decs, method="umap")
t_first = time.perf_counter() - t0
print(f"import {t_import:.1f}s, umap on {len(xy):,} x 512 (incl. numba JIT): {t_first:.1f}s, method {method}", flush=True)
t0 = time.perf_counter()
embed_decoders(decs, method="pca")
print(f"pca: {time.perf_counter()-t0:.2f}s")
