"""--plot FILE.png: throughput vs problem size (the work of one call, FLOPs or bytes),
one panel per (op, mode), one line per implementation, the machine's ceiling dashed. matplotlib is optional: without it
the run still prints and writes its CSV, and says how to get the plot."""

import math


def missing():
    """None if matplotlib imports, else a one-line message."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return ("--plot needs matplotlib, which is not installed: "
                "pip install matplotlib (the table and --csv do not need it)")
    return None


def _panels(rows):
    """{(op, mode): {impl: [(size, rate)]}} in run order, timed rows only."""
    panels = {}
    for r in rows:
        if r.rate is None:
            continue
        work = r.rate * 1e9 * r.p50  # FLOPs or bytes of one call: the size axis
        panels.setdefault((r.op, r.mode), {}).setdefault(r.impl, []).append(
            (work, r.rate))
    return panels


def draw(rows, path, title):
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = _panels(rows)
    if not panels:
        return 0
    ceilings = {(r.op, r.mode): (r.ceiling, r.unit) for r in rows}
    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    impls = sorted({i for p in panels.values() for i in p})
    colors = {i: plt.cm.tab10(k % 10) for k, i in enumerate(impls)}
    for ax, ((op, mode), lines) in zip(axes.flat, panels.items()):
        for impl, points in lines.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-",
                    color=colors[impl], label=impl, markersize=4)
        ceiling, unit = ceilings[(op, mode)]
        ax.axhline(ceiling, color="gray", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no overlaps
        ax.set_title(f"{op} {mode}", fontsize=9)
        ax.set_ylabel(unit, fontsize=8)
        ax.set_xlabel("work per call (" + ("FLOP" if unit.startswith("GFLOP")
                                              else "bytes") + ")", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colors[i], marker="o", label=i) for i in impls]
    handles.append(plt.Line2D([], [], color="gray", linestyle="--", label="ceiling"))
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05 + 0.02 * (len(handles) > 5), 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(panels)
