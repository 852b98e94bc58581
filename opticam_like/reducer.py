"""The Reducer: the stages of a reduction, in order.

.. code-block:: python

    red = Reducer("night/reduced", data_directory="night/data")
    red.create_catalogs()          # scan -> reference -> align + stack -> catalogue
    red.photometry(AperturePhotometer())

The heavy lifting lives in the stage modules (:mod:`~opticam_like.scan`,
:mod:`~opticam_like.stages`, :mod:`~opticam_like.catalog`, ...), the settings in
:mod:`~opticam_like.settings`, file names in :mod:`~opticam_like.schema`, writers in
:mod:`~opticam_like.outputs`; this module only orders the stages and keeps the books
(rejected frames, timings). The constructor only validates (settings and paths): the frames
are scanned by the first stage, and the output directory is created by the first file written.
Messages go to the ``opticam_like.reducer`` logger and, during the run, to ``info.log``.
"""

from dataclasses import replace
import json
import logging
from pathlib import Path
import time
import weakref

import numpy as np
from astropy.table import Table
from astropy.time import Time

from . import schema
from ._version import __version__
from .cache import CACHE_DIRECTORY, ResultCache
from .calibration import CalibrationSet
from .calibration.defects import build_defect_maps
from .catalog import (catalog_from_stack, choose_reference, guide_stars,
                      transforms_from_table, transforms_table)
from .errors import ConfigError, ReductionError
from .flags import PhotFlag
from .frames import FrameError, read_header
from .lock import OutputLock
from .outputs import (RunLog, rejected_table, software_versions, write_json, write_stack,
                      write_table, write_text)
from .parallel import FrameFailure, WorkerPool
from .photometry.aperture_choice import candidate_photometers, select_aperture
from .photometry.photometers import AperturePhotometer
from .photometry.tables import photometry_table
from .scan import CALIBRATION_TYPES, acquisition_order, scan_frames
from .settings import Settings
from .sky import number_stars
from .stacking import StackFactory
from .stages import FrameItem, PassContext, catalog_frame, detect_frame, photometry_frame
from .timing import frame_time_flags, frame_times

__all__ = ["Reducer"]

log = logging.getLogger(__name__)

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
    alignment : {'auto', 'translation', 'astroalign'}
        Transform search (see :func:`~opticam_like.alignment.find_transform`).
    recentre : {'transform', 'each', 'none'}
        Position refinement in the photometry pass (default ``'transform'``).
    max_sources : int, optional
        Keep at most this many catalogue sources per filter.
    config : str, Path or dict, optional
        Reduction configuration (TOML, see :mod:`opticam_like.config`); explicit arguments
        take precedence over it. Everything but the executor and the calibration object is
        merged into :attr:`settings` (:class:`~opticam_like.settings.Settings`), echoed to
        ``misc/config.toml``.
    progress : bool
        Show progress bars.
    find_defects : bool, optional
        Find hot and dead pixels, columns and rows in the science frames themselves (default
        True; with or without darks and flats): their pixels are flagged ``BAD_PIXEL``, kept
        out of the background and the stack, and flag every point whose aperture they touch.
        The maps are cached in ``cal/`` (:mod:`opticam_like.calibration.defects`).
    start_method : {'fork', 'forkserver', 'spawn'}, optional
        Start method of the worker processes (default: Python's). User callables (even
        lambdas and functions defined in a notebook) are sent to the workers by value
        (cloudpickle) under every start method.
    fresh : bool
        Ignore the per-frame results cached in ``out_directory/cache`` by earlier runs
        (:mod:`opticam_like.cache`) and compute every frame again. By default a run computes
        only the frames whose result for the same frame content and settings is not cached,
        so a re-run after a crash resumes where it stopped.
    catalog_frames : int, optional
        Build each filter's catalogue from the stack of its first ``catalog_frames`` frames
        only, the reference frame chosen among them and the defect maps found in them
        (every frame is still aligned and measured); default all. These then stay the same
        as frames are added to the night (:mod:`opticam_like.follow`).

    Attributes
    ----------
    settings : Settings
        The validated settings of the run.
    catalogs, transforms : dict of str to Table
        Per filter, after :meth:`create_catalogs`.
    rejected : list of FrameFailure
        Frames rejected so far (also :attr:`rejected_table`).
    default_photometer : str or None
        Name of the first photometer of the last :meth:`photometry` call (logged).

    Raises
    ------
    ConfigError
        Invalid configuration or instrument (the message names the file and keyword).
    ReductionError
        A missing data directory or an output directory inside the data; later, from the
        first stage: no frames or frames of mixed binning, or another run (another process)
        writing into the output directory (:mod:`opticam_like.lock`).
    """

    def __init__(self, out_directory, data_directory=None, c1_directory=None,
                 c2_directory=None, c3_directory=None, instrument=None, background=None,
                 finder=None, catalog_finder=None, n_workers=None, executor=None,
                 calibration=None, bias=None, dark=None, flat=None, remove_cosmic_rays=None,
                 site=None, target=None, reference_frame=None, alignment=None, recentre=None,
                 max_sources=None, config=None, progress=None, start_method=None,
                 find_defects=None, fresh=False, catalog_frames=None):
        self.out_directory = Path(out_directory)
        given = [str(d) for d in (data_directory, c1_directory, c2_directory, c3_directory)
                 if d is not None]
        self.settings = Settings.from_arguments(
            config, instrument=instrument, background=background, finder=finder,
            catalog_finder=catalog_finder, remove_cosmic_rays=remove_cosmic_rays,
            find_defects=find_defects, site=site,
            target=target, reference_frame=reference_frame, alignment=alignment,
            recentre=recentre, max_sources=max_sources, n_workers=n_workers,
            start_method=start_method, progress=progress, bias=bias, dark=dark, flat=flat,
            data_directories=given or None)
        self.data_directories = [Path(d) for d in self.settings.data_directories]
        self._check_paths()
        self.pool = WorkerPool(self.settings.n_workers, executor=executor,
                               progress=self.settings.progress,
                               start_method=self.settings.start_method)
        if self.pool.process_workers:
            for what in ("background", "finder", "catalog_finder"):
                WorkerPool.check_picklable(getattr(self.settings, what),
                                           f"the {what.replace('_', ' ')}")
        self._calibration = calibration
        self._defects_done = False
        self._groups = None
        self.rejected = []
        self.catalogs = {}
        self.transforms = {}
        self.default_photometer = None
        self._carried = {}  # per filter and frame: (cosmic-ray pixels, compact background)
        self._cache = ResultCache(self.out_directory / CACHE_DIRECTORY, fresh=fresh)
        if catalog_frames is not None and int(catalog_frames) < 1:
            raise ConfigError(f"catalog_frames must be >= 1, got {catalog_frames}")
        self.catalog_frames = None if catalog_frames is None else int(catalog_frames)
        self._locks = []
        self._log = RunLog(self.out_directory / schema.LOG_FILE)
        self._finalizer = weakref.finalize(self, _end_run, self._log, self._locks)

    def _check_paths(self):
        if not self.data_directories:
            raise ConfigError("give data_directory (or c1_directory/c2_directory/"
                              "c3_directory)")
        out = self.out_directory.resolve()
        for data in self.data_directories:
            if not data.is_dir():
                raise ReductionError(f"data directory {data} does not exist")
            data = data.resolve()
            if out == data or data in out.parents:
                raise ReductionError(f"out_directory {self.out_directory} is inside the data "
                                     f"directory {data}; nothing may be written there")

    @property
    def cache(self):
        """The run's :class:`~opticam_like.cache.ResultCache` (``stats``: frames taken from
        the cache and computed, per pass and filter)."""
        return self._cache

    @property
    def profile(self):
        """The instrument profile (:attr:`Settings.profile`)."""
        return self.settings.profile

    @property
    def background(self):
        """The global background estimator (:attr:`Settings.background`)."""
        return self.settings.background

    @property
    def calibration(self):
        """The calibration masters (built, and cached under ``cal/``, on first use), or None."""
        s = self.settings
        if self._calibration is None and any((s.bias, s.dark, s.flat)):
            log.info("building calibration masters")
            self._calibration = CalibrationSet.from_directories(
                bias=s.bias, dark=s.dark, flat=s.flat, profile=s.profile,
                cache_directory=self.out_directory / "cal")
        return self._calibration

    def _find_defects(self):
        """Defect maps of every camera from its science frames (built once, cached)."""
        s = self.settings
        if not s.find_defects or self._defects_done:
            return
        infos = [info for group in self.groups.values()
                 for info in group[:self.catalog_frames]]
        context = PassContext(profile=s.profile, calibration=self.calibration,
                              background=s.background)
        maps, failures = build_defect_maps(infos, context, self.pool,
                                           cache_directory=self.out_directory / "cal",
                                           log=log)
        for failure in failures:
            log.warning("defect map: %s: %s", Path(failure.path).name, failure.reason)
        self._calibration = replace(self.calibration or CalibrationSet(), defects=maps)
        self._defects_done = True

    # ------------------------------------------------------------------ stage 1: scan
    @property
    def groups(self):
        """Frames per filter (time-ordered lists of FrameInfo); the scan runs on first use."""
        if self._groups is None:
            self._scan()
        return self._groups

    @property
    def filters(self):
        """Filters found in the data, in the instrument's order."""
        return list(self.groups)

    def _scan(self):
        start = time.perf_counter()
        if not self._locks:
            self._locks.append(OutputLock(self.out_directory))
        write_text(self.settings.to_toml(), self.out_directory / schema.CONFIG_ECHO)
        log.info("opticam_like %s: reducing %s into %s", __version__,
                 ", ".join(map(str, self.data_directories)), self.out_directory)
        scan = scan_frames(self.data_directories, self.profile, pool=self.pool)
        self._groups = scan.groups
        self._reject(scan.rejected)
        for warning in scan.warnings:
            log.warning(warning)
        log.info("found %s in %.1f s", ", ".join(f"{len(v)} {k} frames" for k, v in
                                                 self._groups.items()),
                 time.perf_counter() - start)
        write_table(scan.frame_table(), self.out_directory / schema.FRAMES_TABLE)
        t0 = min(infos[0].time for infos in self._groups.values())
        from .plots.reduction import plot_header_times
        plot_header_times({k: (Time([i.time for i in v]) - t0).sec
                           for k, v in self._groups.items()},
                          self.out_directory / schema.HEADER_TIMES_PLOT)
        calibration = self.calibration
        write_json({"created": Time.now().isot, "versions": software_versions(),
                    "data_directories": [str(d) for d in self.data_directories],
                    "instrument": self.profile.name,
                    "calibration": calibration.describe() if calibration is not None else None,
                    "frames": {k: len(v) for k, v in self._groups.items()}},
                   self.out_directory / schema.PROVENANCE)
        self._write_rejected()

    # ------------------------------------------------------------------ stage 2: catalogues
    def create_catalogs(self):
        """Choose a reference per filter, align and stack every frame, detect the catalogue.

        With several cameras the catalogues are matched into one night-wide list
        (:func:`~opticam_like.sky.number_stars`): a star has the same ID in every camera, and
        every camera's catalogue holds every star of the night in ID order.

        Writes ``cat/{filter}_catalog.ecsv``, ``cat/night_catalog.ecsv`` (several cameras),
        ``cat/{filter}_stack.fits``, ``cat/transforms_{filter}.ecsv``, ``cat/catalogs.pdf``,
        ``diag/background.pdf``, ``diag/alignment.pdf`` and updates
        ``diag/rejected_frames.ecsv``.

        Returns
        -------
        dict of str to astropy.table.Table
            The catalogue of each filter.
        """
        self._find_defects()
        stacks, counts, backgrounds, drifts = {}, {}, {}, {}
        for name, infos in self.groups.items():
            s = self.settings
            context = PassContext(profile=s.profile, calibration=self.calibration,
                                  remove_cosmic_rays=s.remove_cosmic_rays,
                                  background=s.background, finder=s.finder,
                                  alignment=s.alignment)
            ref_index, ref_row = self._choose_reference(name, infos, context)
            context = replace(context, reference_xy=ref_row.xy,
                              reference_shape=infos[ref_index].shape)
            items = [FrameItem(i.path, i, n) for n, i in enumerate(infos)]
            n_stack = min(self.catalog_frames or len(infos), len(infos))
            rows, timings, stack = self._cache.map(
                self.pool, "catalogue", name, catalog_frame, items, context,
                desc=f"catalogue {name}", stack=StackFactory(infos[ref_index].shape, n_stack),
                stack_frames=n_stack)
            self._log_timings(f"catalogue pass {name}", timings)
            self._carried[name] = [(getattr(r, "cosmic_rays", None),
                                    getattr(r, "background", None),
                                    getattr(r, "trails", ())) for r in rows]
            catalog, image = catalog_from_stack(stack, s.catalog_finder, s.max_sources)
            catalog.meta.update({"filter": name,
                                 "reference_frame": Path(infos[ref_index].path).name})
            log.info("%s: reference %s, %d of %d frames stacked, %d sources", name,
                     Path(infos[ref_index].path).name, stack.n_frames, len(infos),
                     len(catalog))
            transforms, failures = transforms_table([i.path for i in infos], rows)
            self._reject(failures)
            self.catalogs[name] = catalog
            self.transforms[name] = transforms
            stacks[name], counts[name] = image, stack.count
            seconds = (Time([i.time for i in infos]) - infos[0].time).sec
            backgrounds[name] = (seconds, transforms["background_median"],
                                 transforms["background_rms"])
            drifts[name] = (seconds, np.where(transforms["aligned"], transforms["dx"], np.nan),
                            np.where(transforms["aligned"], transforms["dy"], np.nan),
                            transforms["fwhm"])
            write_table(transforms, schema.transforms_path(self.out_directory, name))
            write_stack(image, stack.count, schema.stack_path(self.out_directory, name))
        self.catalogs, night = number_stars(self.catalogs, counts)
        if night is not None:
            write_table(night.table, self.out_directory / schema.NIGHT_CATALOG)
        for name, catalog in self.catalogs.items():
            write_table(catalog, schema.catalog_path(self.out_directory, name))
        from .plots import reduction as plots
        plots.plot_catalogs(stacks, self.catalogs, self.out_directory / schema.CATALOGS_PLOT)
        plots.plot_background(backgrounds, self.out_directory / schema.BACKGROUND_PLOT)
        plots.plot_alignment(drifts, self.out_directory / schema.ALIGNMENT_PLOT)
        self._write_rejected()
        return self.catalogs

    def _choose_reference(self, name, infos, context):
        """Reference frame of a filter: the user's index or the best of the first frames."""
        if self.settings.reference_frame != "auto":
            index = self.settings.reference_frame
            if index >= len(infos):
                raise ConfigError(f"reference_frame {index} is beyond the {len(infos)} "
                                  f"{name} frames")
            candidates = [index]
        else:
            candidates = list(range(len(infos)))
        failures = []
        size = min(REFERENCE_CANDIDATES, self.catalog_frames or REFERENCE_CANDIDATES)
        for start in range(0, len(candidates), size):
            chunk = candidates[start:start + size]
            items = [FrameItem(infos[i].path, infos[i], i) for i in chunk]
            rows, _, _ = self._cache.map(self.pool, f"reference{start}", name, detect_frame,
                                         items, context, desc=f"reference {name}")
            best = choose_reference(rows)
            if best is not None:
                return chunk[best], rows[best]
            failures += [r for r in rows if isinstance(r, FrameFailure)]
        # the frames' own errors (e.g. a user's background raising) explain the failure
        self._reject(failures)
        self._write_rejected()
        cause = (f"; {len(failures)} of {len(candidates)} frames failed, first at "
                 f"{failures[0].stage}: {failures[0].reason} (all in "
                 f"{schema.REJECTED_TABLE})" if failures else "")
        raise ReductionError(f"no {name} frame has 3 or more detectable stars to serve as "
                             f"the reference{cause}")

    # ------------------------------------------------------------------ stage 3: photometry
    def photometry(self, *photometers, choose_aperture=False):
        """Forced photometry of every catalogue source in every frame.

        Parameters
        ----------
        *photometers : photometer objects
            Default: the configuration's ``[[photometry]]`` tables, else one
            :class:`~opticam_like.photometry.photometers.AperturePhotometer`. All of them share
            one read, calibration and background (and local annulus) per frame.
        choose_aperture : bool
            Instead of the photometers, measure apertures of 0.75 to 2.5 FWHM in the pass and
            keep, per filter, the one whose comparison stars' differential light curves have
            the best S/N (:func:`~opticam_like.photometry.aperture_choice.select_aperture`),
            written as ``lcs/{filter}_aperture_best.fits`` with the scores in its metadata
            (``APERCHOI``).

        Returns
        -------
        dict of (str, str) to astropy.table.Table
            Per ``(filter, photometer name)`` the table written to
            ``lcs/{filter}_{photometer}.fits``.
        """
        s = self.settings
        if choose_aperture:
            photometers = candidate_photometers()
        photometers = photometers or s.photometers or (AperturePhotometer(),)
        names = ["aperture_best"] if choose_aperture else [p.name for p in photometers]
        if len(set(names)) != len(names):
            raise ConfigError(f"photometer names must differ, got {names}")
        self.default_photometer = names[0]
        log.info("photometers %s; default (the first): %s", ", ".join(names), names[0])
        if not self.catalogs:
            self._load_catalogs()
        self._find_defects()
        tables = {}
        for name, infos in self.groups.items():
            catalog, transforms = self.catalogs[name], self.transforms[name]
            guide = guide_stars(catalog)
            context = PassContext(
                profile=s.profile, calibration=self.calibration,
                remove_cosmic_rays=s.remove_cosmic_rays, background=s.background,
                catalog_xy=np.column_stack([catalog["x"], catalog["y"]]).astype(float),
                catalog_flux=np.asarray(catalog["flux"], dtype=float), guide=guide,
                photometers=tuple(photometers), recentre=s.recentre,
                fwhm_guess=float(np.nanmedian(catalog["fwhm"])) if len(catalog) else 3.0,
                n_sky_global=_mesh_pixels(s.background), site=s.site)
            matrices = [t.matrix for t in transforms_from_table(transforms)]
            not_aligned = np.where(transforms["aligned"], 0, PhotFlag.NOT_ALIGNED)
            carried = self._carried.get(name, [(None, None, ())] * len(infos))
            items = [FrameItem(i.path, i, n, tuple(matrices[n].ravel()),
                               float(transforms["fwhm"][n]), int(not_aligned[n]),
                               *carried[n])
                     for n, i in enumerate(infos)]
            rows, timings, _ = self._cache.map(self.pool, "photometry", name, photometry_frame,
                                               items, context, desc=f"photometry {name}")
            self._log_timings(f"photometry pass {name}", timings)
            failures = [r for r in rows if isinstance(r, FrameFailure)]
            self._reject(failures)
            if rows and len(failures) == len(rows):  # e.g. a user's photometer raising
                self._write_rejected()
                raise ReductionError(f"no {name} frame could be measured; first at "
                                     f"{failures[0].stage}: {failures[0].reason} (all in "
                                     f"{schema.REJECTED_TABLE})")
            frame_flags = not_aligned | frame_time_flags(infos, acquisition_order(infos))
            infos, rows, frame_flags = _with_rejected(infos, rows, frame_flags,
                                                      self._scan_rejected(name))
            times, time_name = frame_times(infos, s.site, s.target)
            written, extra = photometers, {}
            if choose_aperture:
                best, scores = select_aperture(rows, photometers, catalog)
                log.info("%s: aperture %.2f FWHM chosen (differential S/N %s)", name,
                         best.fwhm_scale, ", ".join(f"{k:g}: {v:.1f}" for k, v in
                                                    zip(scores["fwhm_scale"], scores["snr"])))
                written = (best,)
                extra = {"APERCHOI": json.dumps({f"{k:g}": float(v) for k, v in
                                                 zip(scores["fwhm_scale"], scores["snr"])})}
            for photometer in written:
                label = "aperture_best" if choose_aperture else photometer.name
                table = photometry_table(photometer.name, [Path(i.path).name for i in infos],
                                         times, time_name, [i.exposure for i in infos], rows,
                                         frame_flags, len(catalog))
                table.meta.update(self._table_meta(name, photometer))
                table.meta.update(extra, PHOTNAME=label)
                write_table(table, schema.photometry_path(self.out_directory, name, label))
                tables[(name, label)] = table
        self._write_rejected()
        return tables

    def _scan_rejected(self, name):
        """Frames of group ``name`` that the scan rejected but whose header reads (e.g. an
        odd image shape), with their failures: they keep ``FRAME_REJECTED`` rows. Frames
        without a readable filter and time cannot be placed in a table."""
        found = []
        for failure in self.rejected:
            if failure.stage != "scan":
                continue
            try:
                info = read_header(failure.path, self.profile)
            except (FrameError, OSError):
                continue
            science = info.image_type.strip().lower() not in CALIBRATION_TYPES
            if science and name in (info.filter, f"{info.filter}-{info.camera}"):
                found.append((info, failure))
        return found

    def _table_meta(self, name, photometer):
        return {"FILTER": name, "INSTRUME": self.profile.name, "PHOTNAME": photometer.name,
                "PHOTPARS": json.dumps(photometer.params()),
                "CONFIG": json.dumps(self.settings.to_dict()),
                "VERSIONS": json.dumps(software_versions()),
                "CATALOG": str(schema.catalog_path("", name)),
                schema.DEFAULT_PHOTOMETER_KEY: self.default_photometer}

    def _load_catalogs(self):
        """Catalogues and transforms of an earlier ``create_catalogs`` run."""
        for name in self.groups:
            cat = schema.catalog_path(self.out_directory, name)
            trans = schema.transforms_path(self.out_directory, name)
            if not cat.is_file() or not trans.is_file():
                raise ReductionError(f"no catalogue for filter {name!r} in "
                                     f"{cat.parent}: run create_catalogs() first")
            self.catalogs[name] = Table.read(cat)
            self.transforms[name] = Table.read(trans)

    # ------------------------------------------------------------------ bookkeeping
    def _reject(self, failures):
        known = {(f.path, f.stage) for f in self.rejected}
        for failure in failures:
            if (failure.path, failure.stage) not in known:
                self.rejected.append(failure)
                log.warning("rejected %s at %s: %s", Path(failure.path).name, failure.stage,
                            failure.reason)

    def _write_rejected(self):
        write_table(self.rejected_table, self.out_directory / schema.REJECTED_TABLE)

    @property
    def rejected_table(self):
        """Rejected frames so far (:data:`opticam_like.schema.REJECTED_COLUMNS`)."""
        return rejected_table(self.rejected)

    @staticmethod
    def _log_timings(what, timings):
        detail = ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
        log.info("%s: %.2f s of work (%s)", what, sum(timings.values()), detail)

    def close(self):
        """Shut down the worker processes, detach the run's log file and release the output
        directory's lock."""
        self.pool.close()
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _with_rejected(infos, rows, frame_flags, rejected):
    """Frames, rows and frame flags with the ``(FrameInfo, FrameFailure)`` pairs of
    ``rejected`` inserted in time order."""
    if not rejected:
        return infos, rows, frame_flags
    entries = list(zip(infos, rows, frame_flags)) + [(i, f, 0) for i, f in rejected]
    entries.sort(key=lambda e: (e[0].time.jd1, e[0].time.jd2, e[0].path))
    infos, rows, flags = zip(*entries)
    return list(infos), list(rows), np.array(flags, dtype=np.int32)


def _end_run(run_log, locks):
    run_log.close()
    while locks:
        locks.pop().release()


def _mesh_pixels(background):
    box = getattr(background, "box_size", 64)
    box = np.broadcast_to(box, 2)
    return int(box[0] * box[1])
