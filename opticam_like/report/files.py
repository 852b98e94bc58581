"""Where the report finds things in a Reducer output directory (the only file-name knowledge
of the report; to be replaced by :mod:`opticam_like.schema` when that exists)."""

from pathlib import Path

__all__ = ["OutputFiles"]


class OutputFiles:
    """Paths of the files of one output directory that the report reads or writes.

    Parameters
    ----------
    out_directory : str or Path
        A Reducer output directory.
    """

    def __init__(self, out_directory):
        self.root = Path(out_directory)

    def filters(self):
        """Filters with a photometry table, by wavelength for u g r i z, others by name."""
        names = {p.name.split("_", 1)[0] for p in (self.root / "lcs").glob("*_*.fits")}
        order = "ugriz"
        return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))

    def photometers(self, filter):
        """Photometer names of the photometry tables of a filter, sorted."""
        prefix = f"{filter}_"
        return sorted(p.name[len(prefix):-len(".fits")]
                      for p in (self.root / "lcs").glob(f"{prefix}*.fits"))

    def photometry(self, filter, photometer):
        return self.root / "lcs" / f"{filter}_{photometer}.fits"

    def relative_light_curves(self, filter, photometer):
        """Relative light curves of a filter and photometer (``{filter}_{target}_{photometer}``)."""
        folder = self.root / "relative_light_curves"
        return sorted(folder.glob(f"{filter}_*_{photometer}.ecsv"))

    def stack(self, filter):
        return self.root / "cat" / f"{filter}_stack.fits"

    def catalog(self, filter):
        return self.root / "cat" / f"{filter}_catalog.ecsv"

    def transforms(self, filter):
        return self.root / "cat" / f"transforms_{filter}.ecsv"

    @property
    def frames(self):
        """Per-frame scan table (``file``, ``mjd_mid`` in UTC)."""
        return self.root / "diag" / "frames.ecsv"

    @property
    def rejected_frames(self):
        return self.root / "diag" / "rejected_frames.ecsv"

    @property
    def config(self):
        return self.root / "misc" / "config.toml"

    @property
    def html(self):
        return self.root / "report.html"

    @property
    def pdf(self):
        return self.root / "report.pdf"
