"""The issue's Keras example, stock keras.layers.Dense vs fastnn.keras.Dense, on whatever
backend KERAS_BACKEND names (tensorflow, jax, torch).

    KERAS_BACKEND=jax python examples/keras_mlp.py            # 30 epochs, both models
    KERAS_BACKEND=jax python examples/keras_mlp.py --epochs 100   # the issue's 100
    KERAS_BACKEND=jax python examples/keras_mlp.py --epochs 5 --large --overhead
    KERAS_BACKEND=jax python examples/keras_mlp.py --epochs 1 --large --policy mixed_bfloat16

Both models start from the same weights and see the same deterministic synthetic data
(20 features, a binary label from a fixed random hyperplane); the script prints both
final losses and the time per training step. --large also times a 1024->1024->1 model at
batch 1024 (stock vs fastnn, train_on_batch steps in alternating rounds of three, so that
a busy machine's slow phases fall on both; median step time and the median of the per-round
ratios); --overhead the fixed cost of the bridge:
one tiny Dense (8 -> 8, batch 8) forward + backward, fastnn minus stock. --policy sets
Keras' dtype policy for every model (mixed_bfloat16 / mixed_float16: both twins compute
in 16 bits, fastnn natively on its 16-bit kernels).
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import numpy as np  # noqa: E402

import fastnn.keras  # noqa: E402
from fastnn.bench.machine import LoadWatch  # noqa: E402


def data(n=1000, features=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype("float32")
    w = rng.standard_normal(features)
    y = ((x @ w + 0.5 * rng.standard_normal(n)) > 0).astype("float32").reshape(-1, 1)
    return x, y


def mlp(Dense, sizes, seed):
    """Sequential([Dense(sizes[1], input_dim=sizes[0], relu), ..., Dense(1, sigmoid)])."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential()
    model.add(Dense(sizes[1], input_dim=sizes[0], activation="relu"))
    for units in sizes[2:-1]:
        model.add(Dense(units, activation="relu"))
    model.add(Dense(sizes[-1], activation="sigmoid"))
    return model


class StepTimer(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self.t0)

    def on_train_begin(self, logs=None):
        self.times = []


def train_pair(sizes, x, y, epochs, batch_size):
    """Train the stock and the fastnn twin; returns {name: (history losses, step times)}."""
    out = {}
    for name, Dense in (("stock", keras.layers.Dense), ("fastnn", fastnn.keras.Dense)):
        model = mlp(Dense, sizes, seed=1)
        if name == "fastnn":
            model.set_weights(ref_weights)
        else:
            ref_weights = model.get_weights()  # noqa: F841 - read by the fastnn twin
        model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
        timer = StepTimer()
        hist = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=False, callbacks=[timer])
        out[name] = (hist.history["loss"], timer.times)
    return out


def large_pair(steps, rounds_of=3):
    """Median step time of stock and fastnn 1024->1024->1 at batch 1024, interleaved in
    rounds; also the median over rounds of fastnn's round median / stock's."""
    rng = np.random.default_rng(1)
    xl = rng.standard_normal((1024, 1024)).astype("float32")
    yl = (rng.random((1024, 1)) > 0.5).astype("float32")
    models = {}
    for name, Dense in (("stock", keras.layers.Dense), ("fastnn", fastnn.keras.Dense)):
        model = mlp(Dense, (1024, 1024, 1), seed=1)
        model.compile(loss="binary_crossentropy", optimizer="adam")
        for _ in range(3):
            model.train_on_batch(xl, yl)
        models[name] = model
    times = {name: [] for name in models}
    rounds = max(2, steps // rounds_of)
    for r in range(rounds):
        for name in (("stock", "fastnn") if r % 2 == 0 else ("fastnn", "stock")):
            for _ in range(rounds_of):
                t0 = time.perf_counter()
                models[name].train_on_batch(xl, yl)
                times[name].append(time.perf_counter() - t0)
    per_round = [np.median(times["fastnn"][i:i + rounds_of]) / np.median(times["stock"][i:i + rounds_of])
                 for i in range(0, rounds * rounds_of, rounds_of)]
    return {k: float(np.median(v)) for k, v in times.items()}, float(np.median(per_round))


def overhead(reps=300):
    """Median seconds of one Dense(8 -> 8) forward + backward (batch 8), stock and fastnn,
    through the backend's own gradient call."""
    x = np.random.default_rng(0).standard_normal((8, 8)).astype("float32")
    be = keras.backend.backend()
    res = {}
    for name, Dense in (("stock", keras.layers.Dense), ("fastnn", fastnn.keras.Dense)):
        layer = Dense(8, activation="relu")
        layer.build((None, 8))
        step = _grad_step(be, layer, x)
        for _ in range(20):
            step()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        res[name] = float(np.median(ts))
    return res


def _grad_step(be, layer, x):
    """A compiled forward + backward of sum(layer(x)) w.r.t. the weights (tf.function,
    jax.jit of a stateless call, torch eager: what fit runs on each backend)."""
    if be == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x))
            return tape.gradient(loss, layer.trainable_variables)
        return step
    if be == "jax":
        import jax

        def loss(tv):
            y, _ = layer.stateless_call(tv, [], x)
            return y.sum()
        g = jax.jit(jax.grad(loss))
        tv = [v.value for v in layer.trainable_variables]
        return lambda: jax.block_until_ready(g(tv))
    import torch
    xt = torch.from_numpy(x)

    def step():
        for v in layer.trainable_variables:
            v.value.grad = None
        layer(xt).sum().backward()
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--large", action="store_true", help="also time a 1024->1024->1 model at batch 1024")
    ap.add_argument("--large-steps", type=int, default=36, help="steps per model for --large")
    ap.add_argument("--overhead", action="store_true", help="also measure the bridge's fixed overhead")
    ap.add_argument("--policy", default="float32", help="Keras dtype policy (float32, mixed_bfloat16, mixed_float16)")
    args = ap.parse_args()
    keras.config.set_dtype_policy(args.policy)
    watch = LoadWatch()  # timings on a busy machine say little: say so, as fastnn.bench does
    be = keras.backend.backend()
    x, y = data()
    res = train_pair((20, 10, 1), x, y, args.epochs, args.batch_size)
    print(f"backend {be}, keras {keras.__version__}, policy {args.policy}: issue example, {args.epochs} epochs, batch {args.batch_size}")
    for name, (losses, times) in res.items():
        print(f"  {name:6s} final loss {losses[-1]:.6f}   median step {np.median(times[5:]) * 1e3:.3f} ms")
    diff = max(abs(a - b) for a, b in zip(res["stock"][0], res["fastnn"][0]))
    print(f"  max |loss difference| over the epochs: {diff:.2e}")
    if args.large:
        med, paired = large_pair(args.large_steps)
        print(f"  1024->1024->1 at batch 1024: stock {med['stock'] * 1e3:.2f} ms/step, fastnn "
              f"{med['fastnn'] * 1e3:.2f} ms/step (fastnn/stock {med['fastnn'] / med['stock']:.3f}, "
              f"per-round median {paired:.3f})")
    if args.overhead:
        o = overhead()
        print(f"  Dense(8->8) fwd+bwd: stock {o['stock'] * 1e6:.0f} us, fastnn {o['fastnn'] * 1e6:.0f} us, "
              f"bridge overhead {(o['fastnn'] - o['stock']) * 1e6:.0f} us")
    print(*watch.lines(), sep="\n")


if __name__ == "__main__":
    main()
