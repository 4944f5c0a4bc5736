"""Reliability of the CPU backends under threads, over many calls and at sizes past 2^31:

* 8 Python threads calling every kernel family at once, on shared and on distinct
  inputs, get results bit-identical to serial calls;
* the GIL is released while a kernel runs (another Python thread makes progress);
* results are bit-identical run to run, and the C++ backend's are bit-identical whatever
  its own thread count (fastnn.set_num_threads; OpenBLAS keeps its own): its sums are
  cut into fixed chunks, each summed serially, and the chunks added in order;
* resident memory stays flat over 100k calls of each kernel family;
* an impossible allocation raises MemoryError;
* (slow) relu forward and backward on 2^31 + 7 float32 elements.
"""
import gc
import threading

import numpy as np
import pytest

import fastnn

CPU = [b for b in fastnn.available_backends() if b in ("cpp", "numba")]
rng = np.random.default_rng(11)


def families(x, w, b, t, dy):
    """One call of each kernel family on these inputs -> list of result arrays."""
    y, z = fastnn.dense_forward(x, w, b, "gelu")
    out = [y, z, *fastnn.dense_backward(dy, x, w, y, z, "gelu")]
    out.append(fastnn.activation_forward(x, "softmax"))
    out.append(fastnn.activation_backward(x, "silu", x=x))
    out.append(fastnn.loss_forward(y, dy, "huber"))
    out.append(fastnn.loss_backward(y, dy, "bce_with_logits"))
    out.append(fastnn.loss_forward(y, t, "cross_entropy", label_smoothing=0.1))
    out.append(fastnn.loss_backward(y, t, "cross_entropy"))
    loss, grads = fastnn.dense_cross_entropy(x, w, b, t, chunk_size=100)
    return out + [loss, *grads]


def inputs(m=257, k=67, n=33, seed=0, dtype=np.float64):
    r = np.random.default_rng(seed)
    x = r.standard_normal((m, k)).astype(dtype)
    w = (r.standard_normal((n, k)) / 8).astype(dtype)
    b = r.standard_normal(n).astype(dtype)
    return x, w, b, r.integers(0, n, m), r.standard_normal((m, n)).astype(dtype)


def same(got, ref, what):
    assert len(got) == len(ref)
    for i, (g, r) in enumerate(zip(got, ref)):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(r), err_msg=f"{what}: result #{i}")


@pytest.mark.parametrize("backend", CPU)
@pytest.mark.parametrize("shared", [True, False], ids=["shared-inputs", "distinct-inputs"])
def test_eight_threads_match_serial(backend, shared):
    sets = [inputs(seed=0 if shared else s) for s in range(8)]
    with fastnn.use_backend(backend):
        expected = [families(*a) for a in sets]
    errors, results = [], [None] * 8
    barrier = threading.Barrier(8)

    def work(i):
        try:
            with fastnn.use_backend(backend):
                barrier.wait()
                for _ in range(5):  # several rounds: calls of different threads interleave
                    results[i] = families(*sets[i])
                    same(results[i], expected[i], f"thread {i}")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    assert not errors, errors[0]
    assert all(r is not None for r in results)


@pytest.mark.parametrize("backend", CPU)
def test_gil_is_released_during_a_kernel(backend):
    x = np.random.default_rng(1).standard_normal(1 << 23).astype(np.float32)
    with fastnn.use_backend(backend):
        fastnn.activation_forward(x[:1000], "gelu")  # compile / warm up
    started, done, count = threading.Event(), threading.Event(), [0]

    def kernel():
        with fastnn.use_backend(backend):
            started.set()
            for _ in range(3):
                fastnn.activation_forward(x, "gelu")
        done.set()

    th = threading.Thread(target=kernel)
    th.start()
    started.wait()
    while not done.is_set():  # runs only while the kernel thread does not hold the GIL
        count[0] += 1
    th.join()
    assert count[0] > 1000, f"the main thread ran {count[0]} loop steps while 3 gelu calls on 8M elements ran"


@pytest.mark.parametrize("backend", CPU)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_bit_identical_run_to_run(backend, dtype):
    a = inputs(m=3000, k=200, n=70, dtype=dtype)
    with fastnn.use_backend(backend):
        first = families(*a)
        for _ in range(3):
            same(families(*a), first, "repeat")


@pytest.mark.skipif("cpp" not in CPU, reason="needs the cpp backend")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_cpp_results_do_not_depend_on_thread_count(dtype):
    a = inputs(m=5000, k=300, n=90, dtype=dtype)
    big = np.random.default_rng(2).standard_normal(1 << 20).astype(dtype)
    old = fastnn.num_threads()
    res = {}
    try:
        for nt in (1, 2, 3):
            fastnn.set_num_threads(nt)
            with fastnn.use_backend("cpp"):
                res[nt] = families(*a) + [fastnn.loss_forward(big, big * 0.5, "mse"),
                                          fastnn.loss_forward(big, big * 0.5, "log_cosh", reduction="sum")]
    finally:
        fastnn.set_num_threads(old)
    same(res[2], res[1], "2 threads vs 1")
    same(res[3], res[1], "3 threads vs 1")


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20


@pytest.mark.slow
@pytest.mark.parametrize("backend", CPU)
def test_resident_memory_flat_over_100k_calls(backend):
    x, w, b, t, dy = inputs(m=8, k=16, n=4, dtype=np.float32)
    calls = {
        "dense": lambda: fastnn.dense_backward(dy, x, w, *fastnn.dense_forward(x, w, b, "relu"), "relu"),
        "activation": lambda: fastnn.activation_backward(x, "gelu", x=fastnn.activation_forward(x, "gelu")),
        "loss": lambda: (fastnn.loss_forward(dy, dy, "mse"), fastnn.loss_backward(dy, dy, "mse")),
        "class_loss": lambda: (fastnn.loss_forward(dy, t, "cross_entropy"), fastnn.loss_backward(dy, t, "cross_entropy")),
        "dense_ce": lambda: fastnn.dense_cross_entropy(x, w, b, t),
    }
    n = 100_000 if backend == "cpp" else 20_000  # numba: ~5x the per-call cost
    report = {}
    with fastnn.use_backend(backend):
        for name, fn in calls.items():
            for _ in range(2000):
                fn()
            gc.collect()
            before = _rss_mb()
            for _ in range(n):
                fn()
            gc.collect()
            report[name] = (before, _rss_mb())
    grown = {k: round(a - b0, 1) for k, (b0, a) in report.items()}
    assert all(g < 4.0 for g in grown.values()), f"RSS growth (MB) over {n} calls: {grown}"


@pytest.mark.parametrize("backend", CPU)
def test_impossible_allocation_raises_memory_error(backend):
    huge = np.broadcast_to(np.float32(1.0), (10 ** 13,))  # a view: no memory behind it
    with fastnn.use_backend(backend):
        with pytest.raises(MemoryError):
            fastnn.activation_forward(huge, "relu")
        with pytest.raises(MemoryError):
            fastnn.dense_forward(np.broadcast_to(np.float32(1.0), (10 ** 7, 10 ** 6)), np.ones((2, 10 ** 6), np.float32))


@pytest.mark.slow
@pytest.mark.skipif("cpp" not in CPU, reason="needs the cpp backend")
def test_relu_past_two_to_the_31_elements():
    """64-bit indexing: 2^31 + 7 float32 elements (8.6 GB per array; at most two held)."""
    n = 2 ** 31 + 7
    x = np.full(n, -1.0, dtype=np.float32)
    tail = np.arange(1, 20, dtype=np.float32)
    x[-19:] = tail           # positives across index 2^31 (the last 8 are past it)
    x[2 ** 31 - 100] = 5.0   # and one below it
    with fastnn.use_backend("cpp"):
        y = fastnn.activation_forward(x, "relu")
        del x
        np.testing.assert_array_equal(y[-19:], tail)
        assert y[2 ** 31 - 100] == 5.0
        assert float(y.sum(dtype=np.float64)) == 5.0 + float(tail.sum())
        dx = fastnn.activation_backward(y, "relu", y=y)  # dy = y: dx = y where y > 0, else 0
    np.testing.assert_array_equal(dx[-19:], tail)
    assert float(dx.sum(dtype=np.float64)) == 5.0 + float(tail.sum())
