"""The Reducer: the stages of a reduction, in order.

.. code-block:: python

    red = Reducer("night/reduced", data_directory="night/data")
    red.create_catalogs()          # scan -> reference -> align + stack -> catalogue
    red.photometry(AperturePhotometer())

The heavy lifting lives in the stage modules (:mod:`~opticam_like.scan`,
:mod:`~opticam_like.stages`, :mod:`~opticam_like.catalog`, ...); this module only orders the
stages, keeps the books (rejected frames, timings, provenance) and writes the outputs.
"""

from dataclasses import replace
import json
import logging
import math
from pathlib import Path
import time

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from .background import DefaultBackground, PhotutilsBackground, SExtractorExactBackground
from .calibration import CalibrationSet
from .catalog import (catalog_from_stack, choose_reference, guide_stars, interpolate_matrices,
                      transforms_table)
from .config import dump_config, load_config, photometers_from_config, validate_config
from .detection import DefaultFinder
from .flags import PhotFlag
from .instruments import ConfigError, load_profile, profile_from_mapping
from .outputs import atomic_path, software_versions, write_json, write_table, write_text
from .parallel import FrameFailure, WorkerPool
from .photometry.photometers import AperturePhotometer
from .photometry.tables import photometry_table
from .plots import reduction as plots
from .scan import ReductionError, acquisition_order, scan_frames
from .stacking import StackFactory
from .stages import FrameItem, PassContext, catalog_frame, detect_frame, photometry_frame
from .timing import barycentric_times, get_site, time_flags

__all__ = ["Reducer"]

REFERENCE_CANDIDATES = 10
"""Frames examined (from the start of each filter) to choose the reference frame."""


class Reducer:
    """Reduce a night of frames to catalogues and per-frame photometry.

    Parameters
    ----------
    out_directory : str or Path
        Where every output goes (created). Must not be inside a data directory.
    data_directory : str or Path, optional
        Directory holding the frames of all cameras.
    c1_directory, c2_directory, c3_directory : str or Path, optional
        Per-camera directories (OPTICAM style), instead of or in addition to
        ``data_directory``.
    instrument : str, path or InstrumentProfile
        ``"opticam"``, ``"generic"``, a TOML profile file or a profile object.
    background : callable, optional
        Global background estimator ``bkg(data, mask=None) -> Background2D``-like; default
        :class:`~opticam_like.background.DefaultBackground` (SExtractor algorithm, box 64).
    finder : callable, optional
        Source finder run on every frame for the alignment; default
        :class:`~opticam_like.detection.DefaultFinder` (5 sigma, no deblending).
    catalog_finder : callable, optional
        Source finder run on the stack to build the catalogue; default the same finder with
        deblending, so that close pairs in crowded fields become separate sources.
    n_workers : int, optional
        Worker processes (default: the number of CPUs); 1 runs in this process.
    executor : concurrent.futures.Executor, optional
        Run the per-frame work there instead (e.g. ``dask.distributed.Client``).
    calibration : CalibrationSet, optional
        Precomputed masters. Alternatively give ``bias``, ``dark`` and ``flat``.
    bias, dark, flat : str, Path or list, optional
        Calibration frames (directories or file lists); masters are built (and cached) under
        ``out_directory/cal``.
    remove_cosmic_rays : bool
        Detect cosmic rays with astroscrappy and mask them.
    site : str or tuple or EarthLocation, optional
        Observing site (a name from :data:`opticam_like.timing.SITES` or ``(lon_deg, lat_deg,
        height_m)``); default: the instrument profile's, else the header's observatory.
    target : tuple of (float or str), optional
        Target ``(ra, dec)`` for the barycentric correction; default: the headers' RA/DEC.
    reference_frame : int or 'auto'
        Index (within each filter, time-ordered) of the reference frame, or ``'auto'`` (the
        frame with the most stars among the first ten readable frames).
    alignment : {'auto', 'translation'}
        Transform search (see :func:`~opticam_like.alignment.find_transform`).
    recentre : {'transform', 'each', 'none'}
        Position refinement in the photometry pass.
    max_sources : int, optional
        Keep at most this many catalogue sources per filter.
    config : str, Path or dict, optional
        Reduction configuration (TOML, see :mod:`opticam_like.config`); explicit arguments
        take precedence over it.
    progress : bool
        Show progress bars.

    Raises
    ------
    ConfigError
        Invalid configuration or instrument (the message names the file and keyword).
    ReductionError
        No frames, frames of mixed binning, or an output directory inside the data.
    """

    def __init__(self, out_directory, data_directory=None, c1_directory=None,
                 c2_directory=None, c3_directory=None, instrument=None, background=None,
                 finder=None, catalog_finder=None, n_workers=None, executor=None, calibration=None, bias=None,
                 dark=None, flat=None, remove_cosmic_rays=None, site=None, target=None,
                 reference_frame=None, alignment=None, recentre="transform", max_sources=None,
                 config=None, progress=None):
        self._config_source = str(config) if config is not None and not isinstance(
            config, dict) else "<config>"
        self.config = self._load_config(config)
        settings = self._settings(locals())
        self.out_directory = Path(out_directory)
        self.data_directories = [Path(d) for d in (data_directory, c1_directory, c2_directory,
                                                   c3_directory) if d is not None]
        if not self.data_directories:
            raise ConfigError("give data_directory (or c1_directory/c2_directory/"
                              "c3_directory)")
        self._check_out_directory()
        self.profile = settings["profile"]
        self.background = settings["background"]
        self.finder = settings["finder"]
        self.catalog_finder = settings["catalog_finder"]
        self.remove_cosmic_rays = settings["remove_cosmic_rays"]
        self.reference_frame = settings["reference_frame"]
        self.alignment = settings["alignment"]
        self.recentre = recentre
        self.max_sources = settings["max_sources"]
        self.site = settings["site"]
        self.target = settings["target"]
        self.progress = settings["progress"]
        for sub in ("cat", "diag", "lcs", "misc"):
            (self.out_directory / sub).mkdir(parents=True, exist_ok=True)
        self.log = _make_logger(self.out_directory / "info.log")
        self.pool = WorkerPool(settings["n_workers"], executor=executor, progress=self.progress)
        if self.pool.parallel:
            for what in ("background", "finder", "catalog_finder"):
                WorkerPool.check_picklable(getattr(self, what), f"the {what.replace('_', ' ')}")
        self.calibration = self._calibration(calibration, settings)
        self.rejected = []
        self.catalogs = {}
        self.transforms = {}
        self._carried = {}  # per filter and frame: (cosmic-ray pixels, compact background)
        self.photometers = settings["photometers"]
        self.effective_config = settings["echo"]
        write_text(dump_config(self.effective_config), self.out_directory / "misc" / "config.toml")
        self._scan()

    # ------------------------------------------------------------------ configuration
    @staticmethod
    def _load_config(config):
        if config is None:
            return {}
        if isinstance(config, dict):
            return validate_config(config)
        return load_config(config)

    def _settings(self, args):
        """Merge explicit arguments, the config file and defaults; validate them."""
        cfg = self.config

        def pick(value, section, key, default):
            if value is not None:
                return value
            return cfg.get(section, {}).get(key, default)

        instrument = args["instrument"] if args["instrument"] is not None else cfg.get(
            "instrument", "opticam")
        profile = (profile_from_mapping(instrument, source="[instrument]")
                   if isinstance(instrument, dict) else load_profile(instrument))
        bg = cfg.get("background", {})
        background = args["background"]
        if background is None:
            background = _background_from_config(bg)
        det = cfg.get("detection", {})
        det_kwargs = {"threshold": det.get("threshold", 5.0), "npixels": det.get("npixels", 5),
                      "fwhm": det.get("fwhm")}
        finder = args["finder"] or DefaultFinder(**det_kwargs)
        catalog_finder = args["catalog_finder"] or DefaultFinder(
            deblend=det.get("deblend", True), **det_kwargs)
        site = args["site"]
        if site is None and "site" in cfg:
            s = cfg["site"]
            site = s.get("name") or (s.get("lon"), s.get("lat"), s.get("height", 0.0))
        if site is None:
            site = profile.site
        target = args["target"]
        if target is None and "target" in cfg:
            target = (cfg["target"].get("ra"), cfg["target"].get("dec"))
        cal = cfg.get("calibration", {})
        settings = {
            "profile": profile,
            "background": background,
            "finder": finder,
            "catalog_finder": catalog_finder,
            "remove_cosmic_rays": bool(pick(args["remove_cosmic_rays"], "calibration",
                                            "remove_cosmic_rays", False)),
            "reference_frame": pick(args["reference_frame"], "alignment", "reference_frame",
                                    "auto"),
            "alignment": pick(args["alignment"], "alignment", "method", "auto"),
            "max_sources": pick(args["max_sources"], "reduction", "max_sources", None),
            "n_workers": pick(args["n_workers"], "reduction", "n_workers", None),
            "progress": bool(pick(args["progress"], "reduction", "progress", True)),
            "site": site,
            "target": target,
            "bias": args["bias"] or cal.get("bias"),
            "dark": args["dark"] or cal.get("dark"),
            "flat": args["flat"] or cal.get("flat"),
        }
        settings["photometers"] = photometers_from_config(cfg.get("photometry", []),
                                                          self._config_source)
        if settings["alignment"] not in ("auto", "translation", "astroalign"):
            raise ConfigError(f"alignment must be 'auto', 'translation' or 'astroalign', not "
                              f"{settings['alignment']!r}")
        if args["recentre"] not in ("transform", "each", "none"):
            raise ConfigError(f"recentre must be 'transform', 'each' or 'none', not "
                              f"{args['recentre']!r}")
        ref = settings["reference_frame"]
        if not (ref == "auto" or (isinstance(ref, int) and ref >= 0)):
            raise ConfigError(f"reference_frame must be 'auto' or a frame index >= 0, not "
                              f"{ref!r}")
        settings["echo"] = {
            "instrument": {"name": profile.name, "time_reference": profile.time_reference,
                           "time_keywords": list(profile.time_keywords)},
            "site": _site_echo(site),
            "target": {"ra": target[0], "dec": target[1]} if target else {},
            "calibration": {"bias": _paths(settings["bias"]), "dark": _paths(settings["dark"]),
                            "flat": _paths(settings["flat"]),
                            "remove_cosmic_rays": settings["remove_cosmic_rays"]},
            "background": _describe(background),
            "detection": {"frames": _describe(finder), "catalog": _describe(catalog_finder)},
            "alignment": {"method": settings["alignment"], "reference_frame": ref,
                          "recentre": args["recentre"]},
            "photometry": [p.params() for p in settings["photometers"]],
            "reduction": {"n_workers": settings["n_workers"],
                          "max_sources": settings["max_sources"]},
            "data": {"directories": [str(d) for d in (args["data_directory"],
                                                       args["c1_directory"],
                                                       args["c2_directory"],
                                                       args["c3_directory"]) if d]},
        }
        return settings

    def _check_out_directory(self):
        out = self.out_directory.resolve()
        for data in self.data_directories:
            data = data.resolve()
            if out == data or data in out.parents:
                raise ReductionError(f"out_directory {self.out_directory} is inside the data "
                                     f"directory {data}; nothing may be written there")

    def _calibration(self, calibration, settings):
        if calibration is not None:
            return calibration
        if not any(settings[k] for k in ("bias", "dark", "flat")):
            return None
        self.log.info("building calibration masters")
        return CalibrationSet.from_directories(
            bias=settings["bias"], dark=settings["dark"], flat=settings["flat"],
            profile=self.profile, cache_directory=self.out_directory / "cal")

    # ------------------------------------------------------------------ stage 1: scan
    def _scan(self):
        start = time.perf_counter()
        self.log.info("scanning %s", ", ".join(str(d) for d in self.data_directories))
        scan = scan_frames(self.data_directories, self.profile, pool=self.pool)
        self.groups = scan.groups
        self._reject(scan.rejected)
        for warning in scan.warnings:
            self.log.warning(warning)
        self.log.info("found %s in %.1f s", ", ".join(
            f"{len(v)} {k} frames" for k, v in self.groups.items()), time.perf_counter() - start)
        write_table(scan.frame_table(), self.out_directory / "diag" / "frames.ecsv")
        t0 = min(infos[0].time for infos in self.groups.values())
        plots.plot_header_times(
            {k: (Time([i.time for i in v]) - t0).sec for k, v in self.groups.items()},
            self.out_directory / "diag" / "header_times.pdf")
        self._write_provenance()

    @property
    def filters(self):
        """Filters found in the data, in the instrument's order."""
        return list(self.groups)

    # ------------------------------------------------------------------ stage 2: catalogues
    def create_catalogs(self):
        """Choose a reference per filter, align and stack every frame, detect the catalogue.

        Writes ``cat/{filter}_catalog.ecsv``, ``cat/{filter}_stack.fits``,
        ``cat/transforms_{filter}.ecsv``, ``cat/catalogs.pdf``, ``diag/background.pdf``,
        ``diag/alignment.pdf`` and updates ``diag/rejected_frames.ecsv``.

        Returns
        -------
        dict of str to astropy.table.Table
            The catalogue of each filter.
        """
        stacks, backgrounds, drifts = {}, {}, {}
        for name, infos in self.groups.items():
            context = PassContext(profile=self.profile, calibration=self.calibration,
                                  remove_cosmic_rays=self.remove_cosmic_rays,
                                  background=self.background, finder=self.finder,
                                  alignment=self.alignment)
            ref_index, ref_row = self._choose_reference(name, infos, context)
            context = replace(context, reference_xy=ref_row.xy,
                              reference_shape=infos[ref_index].shape)
            items = [FrameItem(i.path, i, n) for n, i in enumerate(infos)]
            rows, timings, stack = self.pool.map(
                catalog_frame, items, context, desc=f"catalogue {name}",
                accumulator=StackFactory(infos[ref_index].shape, len(infos)))
            self._log_timings(f"catalogue pass {name}", timings)
            self._carried[name] = [(getattr(r, "cosmic_rays", None),
                                    getattr(r, "background", None)) for r in rows]
            catalog, mean = catalog_from_stack(stack, self.catalog_finder, self.max_sources)
            catalog.meta.update({"filter": name, "reference_frame": Path(infos[ref_index].path).name})
            self.log.info("%s: reference %s, %d of %d frames stacked, %d sources", name,
                          Path(infos[ref_index].path).name, stack.n_frames, len(infos),
                          len(catalog))
            transforms = self._transforms(name, infos, rows)
            self.catalogs[name] = catalog
            self.transforms[name] = transforms
            stacks[name] = mean
            seconds = (Time([i.time for i in infos]) - infos[0].time).sec
            backgrounds[name] = (seconds, transforms["background_median"],
                                 transforms["background_rms"])
            drifts[name] = (seconds, np.where(transforms["aligned"], transforms["dx"], np.nan),
                            np.where(transforms["aligned"], transforms["dy"], np.nan),
                            transforms["fwhm"])
            write_table(catalog, self.out_directory / "cat" / f"{name}_catalog.ecsv")
            write_table(transforms, self.out_directory / "cat" / f"transforms_{name}.ecsv")
            _write_image(mean, stack.count, self.out_directory / "cat" / f"{name}_stack.fits")
        plots.plot_catalogs(stacks, self.catalogs, self.out_directory / "cat" / "catalogs.pdf")
        plots.plot_background(backgrounds, self.out_directory / "diag" / "background.pdf")
        plots.plot_alignment(drifts, self.out_directory / "diag" / "alignment.pdf")
        self._write_rejected()
        return self.catalogs

    def _choose_reference(self, name, infos, context):
        """Reference frame of a filter: the user's index or the best of the first frames."""
        if self.reference_frame != "auto":
            index = self.reference_frame
            if index >= len(infos):
                raise ConfigError(f"reference_frame {index} is beyond the {len(infos)} "
                                  f"{name} frames")
            candidates = [index]
        else:
            candidates = list(range(len(infos)))
        for start in range(0, len(candidates), REFERENCE_CANDIDATES):
            chunk = candidates[start:start + REFERENCE_CANDIDATES]
            items = [FrameItem(infos[i].path, infos[i], i) for i in chunk]
            rows, _, _ = self.pool.map(detect_frame, items, context,
                                       desc=f"reference {name}")
            best = choose_reference(rows)
            if best is not None:
                return chunk[best], rows[best]
        raise ReductionError(f"no {name} frame has 3 or more detectable stars to serve as "
                             "the reference")

    def _transforms(self, name, infos, rows):
        """Measured or interpolated transforms of every frame; failures are listed."""
        n = len(infos)
        matrices = np.tile(np.eye(3), (n, 1, 1))
        aligned = np.zeros(n, dtype=bool)
        reasons = [""] * n
        failures = []
        for i, row in enumerate(rows):
            if isinstance(row, FrameFailure):
                reasons[i] = f"{row.stage}: {row.reason}"
                failures.append(row)
            elif row.transform is None:
                reasons[i] = f"alignment: {row.align_error}"
                failures.append(FrameFailure(infos[i].path, "alignment", row.align_error))
            else:
                matrices[i] = row.transform.matrix
                aligned[i] = True
        self._reject(failures)
        matrices = interpolate_matrices(matrices, aligned)
        return transforms_table([Path(i.path).name for i in infos], rows, matrices, aligned,
                                reasons)

    # ------------------------------------------------------------------ stage 3: photometry
    def photometry(self, *photometers):
        """Forced photometry of every catalogue source in every frame.

        Parameters
        ----------
        *photometers : photometer objects
            Default: the configuration's ``[[photometry]]`` tables, else one
            :class:`~opticam_like.photometry.photometers.AperturePhotometer`. All of them share
            one read, calibration and background (and local annulus) per frame.

        Returns
        -------
        dict of (str, str) to astropy.table.Table
            Per ``(filter, photometer name)`` the table written to
            ``lcs/{filter}_{photometer}.fits``.
        """
        photometers = photometers or tuple(self.photometers) or (AperturePhotometer(),)
        names = [p.name for p in photometers]
        if len(set(names)) != len(names):
            raise ConfigError(f"photometer names must differ, got {names}")
        if not self.catalogs:
            self._load_catalogs()
        tables = {}
        for name, infos in self.groups.items():
            catalog, transforms = self.catalogs[name], self.transforms[name]
            guide = guide_stars(catalog)
            context = PassContext(
                profile=self.profile, calibration=self.calibration,
                remove_cosmic_rays=self.remove_cosmic_rays, background=self.background,
                catalog_xy=np.column_stack([catalog["x"], catalog["y"]]).astype(float),
                guide=guide, photometers=tuple(photometers), recentre=self.recentre,
                fwhm_guess=float(np.nanmedian(catalog["fwhm"])) if len(catalog) else 3.0,
                n_sky_global=_mesh_pixels(self.background))
            matrices = _matrices(transforms)
            not_aligned = np.where(transforms["aligned"], 0, PhotFlag.NOT_ALIGNED)
            carried = self._carried.get(name, [(None, None)] * len(infos))
            items = [FrameItem(i.path, i, n, tuple(matrices[n].ravel()),
                               float(transforms["fwhm"][n]), int(not_aligned[n]),
                               *carried[n])
                     for n, i in enumerate(infos)]
            rows, timings, _ = self.pool.map(photometry_frame, items, context,
                                             desc=f"photometry {name}")
            self._log_timings(f"photometry pass {name}", timings)
            self._reject([r for r in rows if isinstance(r, FrameFailure)])
            times, time_name = self._times(infos)
            frame_flags = not_aligned | _time_flags(infos)
            for photometer in photometers:
                table = photometry_table(photometer.name, [Path(i.path).name for i in infos],
                                         times, time_name, [i.exposure for i in infos], rows,
                                         frame_flags, len(catalog))
                table.meta.update(self._table_meta(name, photometer))
                write_table(table, self.out_directory / "lcs" / f"{name}_{photometer.name}.fits")
                tables[(name, photometer.name)] = table
        self._write_rejected()
        return tables

    def _times(self, infos):
        """Mid-exposure times: BJD_TDB when target and site are known, else MJD_UTC."""
        utc = Time([i.time for i in infos]).utc
        ra, dec = self.target if self.target else _header_target(infos)
        site = self.site
        if site is None:
            site = next((i.observatory for i in infos if i.observatory), None)
        try:
            location = get_site(site) if site is not None else None
        except (KeyError, ValueError) as exc:
            self.log.warning("site %r unknown (%s); times stay in MJD_UTC", site, exc)
            location = None
        if location is None or ra is None or dec is None:
            self.log.info("no %s: times are mid-exposure MJD_UTC",
                          "site" if location is None else "target RA/Dec")
            utc.format = "mjd"
            return utc, "mjd_utc"
        bjd = barycentric_times(utc, ra, dec, location)
        return Time(bjd.jd1, bjd.jd2, format="jd", scale="tdb"), "bjd_tdb"

    def _table_meta(self, name, photometer):
        return {"FILTER": name, "INSTRUME": self.profile.name, "PHOTNAME": photometer.name,
                "PHOTPARS": json.dumps(photometer.params()),
                "CONFIG": json.dumps(self.effective_config),
                "VERSIONS": json.dumps(software_versions()),
                "CATALOG": f"cat/{name}_catalog.ecsv"}

    def _load_catalogs(self):
        """Catalogues and transforms of an earlier ``create_catalogs`` run."""
        for name in self.groups:
            cat = self.out_directory / "cat" / f"{name}_catalog.ecsv"
            trans = self.out_directory / "cat" / f"transforms_{name}.ecsv"
            if not cat.is_file() or not trans.is_file():
                raise ReductionError(f"no catalogue for filter {name!r} in "
                                     f"{self.out_directory / 'cat'}: run create_catalogs() "
                                     "first")
            self.catalogs[name] = Table.read(cat)
            self.transforms[name] = Table.read(trans)

    # ------------------------------------------------------------------ bookkeeping
    def _reject(self, failures):
        known = {(f.path, f.stage) for f in self.rejected}
        for failure in failures:
            if (failure.path, failure.stage) not in known:
                self.rejected.append(failure)
                self.log.warning("rejected %s at %s: %s", Path(failure.path).name,
                                 failure.stage, failure.reason)

    def _write_rejected(self):
        table = Table(names=("file", "path", "stage", "reason"), dtype=(str, str, str, str))
        for f in self.rejected:
            table.add_row((Path(f.path).name, f.path, f.stage, f.reason))
        write_table(table, self.out_directory / "diag" / "rejected_frames.ecsv")

    @property
    def rejected_table(self):
        """Rejected frames so far: ``file``, ``stage``, ``reason``."""
        return Table(rows=[(Path(f.path).name, f.stage, f.reason) for f in self.rejected],
                     names=("file", "stage", "reason"), dtype=(str, str, str))

    def _log_timings(self, what, timings):
        total = sum(timings.values())
        detail = ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
        self.log.info("%s: %.2f s of work (%s)", what, total, detail)

    def _write_provenance(self):
        write_json({"created": Time.now().isot, "versions": software_versions(),
                    "data_directories": [str(d) for d in self.data_directories],
                    "instrument": self.profile.name,
                    "calibration": (self.calibration.describe() if self.calibration is not None
                                    else None),
                    "frames": {k: len(v) for k, v in self.groups.items()}},
                   self.out_directory / "misc" / "provenance.json")
        self._write_rejected()

    def close(self):
        """Shut down the worker processes."""
        self.pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _background_from_config(section):
    estimator = section.get("estimator", "default")
    kwargs = {k: section[k] for k in ("box_size", "filter_size") if k in section}
    classes = {"default": DefaultBackground, "photutils": PhotutilsBackground,
               "sextractor": SExtractorExactBackground}
    if estimator not in classes:
        raise ConfigError(f"[background] estimator must be one of {sorted(classes)}, not "
                          f"{estimator!r}")
    return classes[estimator](**kwargs)


def _mesh_pixels(background):
    box = getattr(background, "box_size", 64)
    box = np.broadcast_to(box, 2)
    return int(box[0] * box[1])


def _describe(obj):
    params = {}
    for key, value in getattr(obj, "__dict__", {}).items():
        if key.startswith("_"):
            continue
        if isinstance(value, (int, float, str, bool)) or value is None:
            params[key] = value
        elif isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) for v in value):
            params[key] = list(value)
    return {"class": f"{type(obj).__module__}.{type(obj).__qualname__}", **params}


def _paths(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value)


def _site_echo(site):
    if site is None:
        return {}
    if isinstance(site, str):
        return {"name": site}
    if hasattr(site, "geodetic"):
        lon, lat, height = site.geodetic
        return {"lon": float(lon.deg), "lat": float(lat.deg), "height": float(height.to_value("m"))}
    return {"lon": site[0], "lat": site[1], "height": site[2]}


def _time_flags(infos):
    """BAD_TIME flags of frames (in time order) whose stamps go backwards or repeat in
    acquisition order."""
    order = acquisition_order(infos)
    flags = np.zeros(len(infos), dtype=np.int32)
    flags[order] = time_flags(Time([infos[i].time for i in order]))
    return flags


def _header_target(infos):
    for info in infos:
        if math.isfinite(info.ra) and math.isfinite(info.dec):
            return info.ra, info.dec
    return None, None


def _matrices(transforms):
    six = np.asarray(transforms["matrix"], dtype=float).reshape(-1, 2, 3)
    bottom = np.tile([0.0, 0.0, 1.0], (len(six), 1, 1))
    return np.concatenate([six, bottom], axis=1)


def _write_image(mean, count, path):
    hdus = fits.HDUList([fits.PrimaryHDU(mean.astype(np.float32)),
                         fits.ImageHDU(np.asarray(count, dtype=np.int32), name="COUNT")])
    hdus[0].header["BUNIT"] = "electron"
    hdus[0].header["COMMENT"] = "Mean of the aligned, background-subtracted frames"
    with atomic_path(path) as tmp:
        hdus.writeto(tmp, overwrite=True)


def _make_logger(path):
    logger = logging.getLogger(f"opticam_like.reducer.{path}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        console = logging.StreamHandler()
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter("[opticam_like] %(levelname)s %(message)s"))
        logger.addHandler(console)
    return logger
