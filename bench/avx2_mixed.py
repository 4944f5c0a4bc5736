"""fastnn's numpy API Dense+relu 256x1024x1024 (f+b and f) alone, or right after two
torch 1024^3 matmuls each call (the mixed-process case of issue 22), at an ISA level.

    python bench/avx2_mixed.py alone|mixed avx512|avx2

Run alone and mixed alternately in separate processes; compare best and median GF/s."""
import sys, time
import numpy as np
mode=sys.argv[1]; lvl=sys.argv[2]
import fastnn
from fastnn._backends import cpp
cpp._C._set_isa(lvl)
if mode!="alone":
    import torch
    ta=torch.randn(1024,1024)
rng=np.random.default_rng(0)
m,k,n=256,1024,1024
x=rng.standard_normal((m,k)).astype(np.float32); w=(rng.standard_normal((n,k))/32).astype(np.float32)
b=np.zeros(n,np.float32); g=rng.standard_normal((m,n)).astype(np.float32)
def fb():
    y,z=fastnn.dense_forward(x,w,b,"relu"); fastnn.dense_backward(g,x,w,y,z,"relu")
def f():
    fastnn.dense_forward(x,w,b,"relu")
fb()
res=[]
for fn,name in ((fb,"f+b"),(f,"f")):
    ts=[]
    for it in range(15):
        if mode=="mixed":
            for _ in range(2): ta@ta
        t0=time.perf_counter(); fn(); ts.append(time.perf_counter()-t0)
    fl=(6 if name=="f+b" else 2)*m*n*k
    res.append(f"{name} {fl/min(ts)/1e9:.1f} GF/s (median {fl/np.median(ts)/1e9:.1f})")
print(mode,lvl,cpp._C._gemm_path(),"; ".join(res))
