"""Shared helpers of the benchmark scripts: timing by medians of repeats, table printing."""

import time

import numpy as np

__all__ = ["median_time", "format_table", "synthetic_frame"]


def median_time(func, *args, repeats=7, warmup=1, **kwargs):
    """Median wall time of ``func(*args, **kwargs)`` in seconds.

    Parameters
    ----------
    func : callable
        The operation to time.
    repeats : int
        Timed calls; the median is returned (the machine is shared and noisy).
    warmup : int
        Untimed calls made first (caches, lazy imports).

    Returns
    -------
    float
        Median seconds per call.
    """
    for _ in range(warmup):
        func(*args, **kwargs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def format_table(rows, headers):
    """Format rows as a Markdown table.

    Parameters
    ----------
    rows : list of sequence
        Table rows; floats are printed with 4 significant digits.
    headers : sequence of str
        Column names.

    Returns
    -------
    str
        The table.
    """
    def cell(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def synthetic_frame(size, n_stars=200, sky=1000.0, seed=0, dtype=np.float32):
    """A star field with a sloped sky and Poisson noise, for timing.

    Parameters
    ----------
    size : int
        The frame is ``(size, size)`` pixels.
    n_stars : int
        Number of Gaussian stars (FWHM 3 px).
    sky : float
        Mean sky level (e-).
    seed : int
        Random seed.
    dtype : numpy dtype
        Output type.

    Returns
    -------
    image : ndarray, shape (size, size)
        The frame.
    xy : ndarray, shape (n_stars, 2)
        Star positions (0-based x, y).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    model = sky * (1 + 0.2 * xx / size + 0.1 * yy / size)
    xy = rng.uniform(20, size - 20, size=(n_stars, 2))
    fluxes = 10 ** rng.uniform(3, 6, n_stars)
    sigma = 3.0 / 2.3548
    for (x, y), f in zip(xy, fluxes):
        x0, y0 = int(x), int(y)
        sl = (slice(max(y0 - 10, 0), y0 + 11), slice(max(x0 - 10, 0), x0 + 11))
        model[sl] += f / (2 * np.pi * sigma**2) * np.exp(
            -((xx[sl] - x) ** 2 + (yy[sl] - y) ** 2) / (2 * sigma**2))
    return rng.poisson(model).astype(dtype), xy
