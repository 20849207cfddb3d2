# numpy/OpenBLAS GFLOP/s on the LM-head matrix products, for bench/matmul.ts (prints one JSON object).
import json
import sys
import time

import numpy as np

N, C, V = 512, 64, 50257
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
rng = np.random.default_rng(0)
x = rng.standard_normal((N, C), dtype=np.float32)
w = rng.standard_normal((V, C), dtype=np.float32)
d = rng.standard_normal((N, V), dtype=np.float32)
out_logits = np.empty((N, V), dtype=np.float32)
out_dx = np.empty((N, C), dtype=np.float32)
out_dw = np.empty((V, C), dtype=np.float32)

products = {
    # [512x64]·[64x50257]: logits = x · wᵀ
    "forward": lambda: np.matmul(x, w.T, out=out_logits),
    # [512x50257]·[50257x64]: dx = dlogits · w
    "backwardInput": lambda: np.matmul(d, w, out=out_dx),
    # [50257x512]·[512x64]: dw = dlogitsᵀ · x
    "backwardWeight": lambda: np.matmul(d.T, x, out=out_dw),
}
result = {}
for name, fn in products.items():
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    result[name] = 2 * N * C * V / times[len(times) // 2] / 1e9
print(json.dumps(result))
