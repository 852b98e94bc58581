"""Where the report finds things in a Reducer output directory, through :mod:`opticam_like.schema`."""

from pathlib import Path

from .. import schema

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
        return schema.photometry_filters(self.root)

    def photometers(self, filter):
        """Photometer names of the photometry tables of a filter, sorted."""
        return schema.photometer_names(self.root, filter)

    def photometry(self, filter, photometer):
        return schema.photometry_path(self.root, filter, photometer)

    def relative_light_curves(self, filter, photometer):
        """Relative light curves of a filter and photometer (``{filter}_{target}_{photometer}``)."""
        return schema.light_curve_paths(self.root, photometer=photometer, filter=filter)

    def stack(self, filter):
        return schema.stack_path(self.root, filter)

    def catalog(self, filter):
        return schema.catalog_path(self.root, filter)

    def transforms(self, filter):
        return schema.transforms_path(self.root, filter)

    @property
    def frames(self):
        """Per-frame scan table (``file``, ``mjd_mid`` in UTC)."""
        return self.root / schema.FRAMES_TABLE

    @property
    def rejected_frames(self):
        return self.root / schema.REJECTED_TABLE

    @property
    def config(self):
        return self.root / schema.CONFIG_ECHO

    @property
    def html(self):
        return self.root / schema.REPORT_HTML

    @property
    def pdf(self):
        return self.root / schema.REPORT_PDF
