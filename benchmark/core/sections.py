"""The typed sections of the configuration: one frozen dataclass per section of ``conf/`` (and of ``params.yaml``).

Each field's type is its validation (``benchmark.core.schema``); ``check`` methods test ranges and relations. Every
choice the harness implements is a ``Literal`` here, in one place, and ``tests/test_config.py`` checks each one against
the registry that implements it (``AUGMENTATIONS``, ``SSIM_VARIANTS``, the fetch layouts, the optimisers, the
schedules, the synthblur photographs, the checkpoint wrappers), so a choice cannot be accepted here and unknown there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from benchmark.core.errors import ConfigError
from benchmark.core.schema import require

Augment = Literal["none", "hflip", "flips", "dihedral"]
"""``benchmark.data.augment.AUGMENTATIONS``."""
SsimVariant = Literal["gaussian2d", "matlab3d", "ycrcb_sample"]
"""``benchmark.scoring.metrics.SSIM_VARIANTS``."""
Align = Literal["none", "ecc"]
"""``none``, or RealBlur's ECC alignment (``benchmark.scoring.realblur``)."""
Quantize = Literal["uint8", "uint8_half_up", "uint8_floor", "none", "uint8_file"]
"""``benchmark.scoring.protocol.QUANTIZERS``; ``uint8_file`` is set by the scoring of result images only (``outputs=``:
8-bit files, scored as read), never in a conf file."""
Padding = Literal["model", "reflect", "zero", "replicate"]
"""``model`` = the model's own (its release's) padding; ``models.base.PAD_MODES`` implements the others."""
Recipe = Literal["common", "published"]
OptimizerName = Literal["adam", "adamw"]
"""``benchmark.training.schedule.OPTIMIZERS``."""
SchedulerName = Literal["step", "cosine", "constant", "poly"]
"""``benchmark.training.schedule.SCHEDULES``."""
FetchLayout = Literal["gopro", "hide", "realblur_j", "realblur_r"]
"""``benchmark.data.layouts.LAYOUTS``."""
BlurFolder = Literal["blur", "blur_gamma"]
DATASET_NAMES = ("gopro", "hide", "realblur_j", "realblur_r", "synthblur")
"""The datasets of ``conf/dataset/`` (``tests/test_config.py`` checks the list): keys of a release's checkpoints and
protocols."""
ReleaseFormat = Literal["model", "params", "state_dict", "params_ema", "G", "bare", "modules", "tensorflow", "caffe"]
"""The key holding a release's state dict (``models.checkpoint.WRAPPER_KEYS``), ``bare``, ``modules`` (a folder of
one bare state dict per submodule, ``models.checkpoint.read_module_folder``), ``tensorflow`` (a folder holding a
TensorFlow checkpoint, ``models.tfcheckpoint``) or ``caffe`` (a ``.caffemodel``, ``models.caffemodel``), both converted
by the model's ``convert_release``."""
Photo = Literal[
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "motorcycle_left",
    "motorcycle_right",
    "page",
    "retina",
    "rocket",
    "text",
]
"""``benchmark.data.synth.PHOTOS``: scikit-image's bundled photographs."""

_EXECUTION = {"execution": True}


def _positive(obj: object, prefix: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        require(value > 0, f"{prefix}.{name}", f"must be > 0, got {value}")


# --- model -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoringProtocol:
    """How a test split is run and scored (``dataset.protocol``, or a release's own in ``model.release.protocols``);
    stated under every table.

    Attributes:
        quantize: ``uint8`` = clamp, then round to 8 bit with ties to even (``numpy.round``/``rint``: BasicSR's
            ``tensor2img``, scikit-image's ``img_as_ubyte``); ``uint8_half_up`` = ties up (``floor(255 x + 0.5)``:
            torchvision's ``save_image`` since 0.3, ``to_pil_image(x + 0.5 / 255)`` of MIMO-UNet and MSFS-Net);
            ``uint8_floor`` = truncated (``floor(255 x)``: torchvision 0.2's ``save_image``, DMPHN's test script);
            ``none`` = clamp only (MIMO-UNet's ``eval.py``); ``uint8_file`` = nothing: the restorations are 8-bit
            result files (``python -m benchmark.evaluate outputs=<folder>``), already on the 8-bit grid, scored as
            read (``benchmark.evaluation.outputs``; never in a conf file).
        ssim_variant: The SSIM of the ``ssim`` column (``benchmark.scoring.metrics.SSIM_VARIANTS``): ``gaussian2d``
            (Wang et al.'s, on RGB), ``matlab3d`` (MATLAB's ``ssim`` on the H x W x 3 volume), or ``ycrcb_sample``:
            SDWNet's (FlyEgle/SDWNet@8e30226 ``utils/calc_psnr_ssim_official.py`` l. 43-47, ``main_sr_hr_pool``)
            scikit-image ``structural_similarity(multichannel=True, gaussian_weights=True,
            use_sample_covariance=True)`` on the uint8 planes of ``cv2.cvtColor(img, COLOR_BGR2YCR_CB)``: per
            (Y, Cr, Cb) channel an 11x11 Gaussian window (sigma 1.5), sample covariance (factor 121/120), data range
            255, a 5 px crop of the map, then the mean over the three channels.
        psnr_on: What the ``psnr`` column compares: ``rgb`` (all three channels), or ``y_ycrcb``: the uint8 Y plane of
            OpenCV's YCrCb (``cv2.cvtColor(img, COLOR_BGR2YCR_CB)[:, :, 0]``, full range, ``(4899 R + 9617 G + 1868 B
            + 8192) >> 14``), data range 255, as SDWNet's ``utils/calc_psnr_ssim_official.py`` l. 43-46 scores it.
            ``y_ycrcb`` and ``ycrcb_sample`` convert 8-bit values, so they need a ``quantize`` other than ``none``.
        align: ``none``, or ``ecc``: RealBlur's ``evaluation_RealBlur_ecc.py`` (intensity matching, ECC homography
            alignment, masked PSNR and SSIM).
        crop_border: Pixels removed from each border before scoring.
        extra_ssim_variants: Further SSIM columns (``ssim_<variant>``), e.g. MATLAB's ``matlab3d`` beside Wang's.
        tile: Inference on overlapping ``tile`` x ``tile`` crops, overlaps averaged (HINet's ``grids``,
            ``benchmark.scoring.tiles``); ``None`` = whole images.
        padding: How an input is padded to the model's multiple: ``model`` = as the model's release pads
            (``DeblurModel.pad_mode``), or ``reflect`` / ``zero`` for every model.
        network_mode: ``eval`` (the deterministic network), or ``train``: run it in train mode as a release's test
            script does (DeblurGAN never calls ``eval()``: live dropout), seeded with ``seed`` before each batch so
            the stochastic output is reproducible.
        seed: The torch seed of ``network_mode: train``.
        source: The script (repository, file and line) whose scoring this protocol follows; printed in footers.
    """

    quantize: Quantize
    ssim_variant: SsimVariant
    align: Align = "none"
    psnr_on: Literal["rgb", "y_ycrcb"] = "rgb"
    crop_border: int = 0
    extra_ssim_variants: tuple[SsimVariant, ...] = ()
    tile: int | None = None
    padding: Padding = "model"
    network_mode: Literal["eval", "train"] = "eval"
    seed: int = 0
    source: str = ""

    def check(self, prefix: str) -> None:
        require(self.crop_border >= 0, f"{prefix}.crop_border", f"must be >= 0, got {self.crop_border}")
        require(self.tile is None or self.tile >= 16, f"{prefix}.tile", f"must be null or >= 16, got {self.tile}")
        require(self.seed >= 0, f"{prefix}.seed", f"must be >= 0, got {self.seed}")
        require(
            self.ssim_variant not in self.extra_ssim_variants
            and len(set(self.extra_ssim_variants)) == len(self.extra_ssim_variants),
            f"{prefix}.extra_ssim_variants",
            f"{list(self.extra_ssim_variants)} must be other variants than ssim_variant {self.ssim_variant!r}, "
            "each once",
        )
        uses_ycrcb = self.psnr_on == "y_ycrcb" or "ycrcb_sample" in (self.ssim_variant, *self.extra_ssim_variants)
        require(
            not uses_ycrcb or self.quantize != "none",  # uint8_file: the values are 8-bit already
            f"{prefix}.quantize",
            "psnr_on y_ycrcb and ssim variant ycrcb_sample convert 8-bit images (cv2.cvtColor on uint8): set a "
            "quantize other than none",
        )
        if self.align == "ecc":
            # RealBlur's official protocol fixes both metrics (masked after alignment); nothing else is defined there.
            require(
                self.ssim_variant == "gaussian2d"
                and not self.extra_ssim_variants
                and self.crop_border == 0
                and self.psnr_on == "rgb",
                f"{prefix}.align",
                "ecc (RealBlur's protocol) scores its own masked RGB PSNR and Gaussian SSIM: set ssim_variant "
                "gaussian2d, no extra_ssim_variants, psnr_on rgb and crop_border 0",
            )

    @property
    def metrics(self) -> tuple[str, ...]:
        """The per-image score columns this protocol produces, in order."""
        return ("psnr", "ssim", *(f"ssim_{v}" for v in self.extra_ssim_variants))

    @property
    def inference(self) -> tuple[int | None, str, str, int]:
        """What the model's run depends on (tiling, padding, mode, seed): protocols that share it share one
        inference."""
        return self.tile, self.padding, self.network_mode, self.seed if self.network_mode == "train" else 0

    def describe(self) -> str:
        """One line for table footers and MLflow tags."""
        q = {
            "uint8": "outputs clamped and rounded to 8 bit",
            "uint8_half_up": "outputs clamped and rounded to 8 bit, ties up",
            "uint8_floor": "outputs clamped and truncated to 8 bit",
            "none": "outputs clamped, not rounded",
            "uint8_file": "8-bit result files scored as read (no rounding: their values are on the 8-bit grid)",
        }[self.quantize]
        run = ""
        if self.tile is not None:
            run += f"; inference on overlapping {self.tile} px tiles, overlaps averaged"
        if self.padding != "model":
            run += f"; {self.padding} padding"
        if self.network_mode == "train":
            run += f"; network in train mode (live dropout), torch seed {self.seed} per batch"
        if self.align == "ecc":
            return (
                f"{q}{run}; RealBlur's official protocol (evaluation_RealBlur_ecc.py): intensity matching and ECC "
                "homography alignment to the ground truth, PSNR over the valid warped pixels, masked Gaussian SSIM "
                "with a 5 px border crop"
            )
        extra = "".join(f"; second SSIM column `{v}`" for v in self.extra_ssim_variants)
        on = "RGB" if self.psnr_on == "rgb" else "the Y of OpenCV's 8-bit YCrCb"
        text = (
            f"{q}{run}; PSNR on {on}; SSIM variant `{self.ssim_variant}`{extra}; alignment: {self.align}; "
            f"border crop: {self.crop_border} px"
        )
        return f"{text} (follows {self.source})" if self.source else text


def _no_file_quantize(protocol: ScoringProtocol, prefix: str) -> None:
    require(
        protocol.quantize != "uint8_file",
        f"{prefix}.quantize",
        "uint8_file is how result files are scored (outputs=), not a rule for a model's outputs; use uint8, "
        "uint8_half_up, uint8_floor or none",
    )


@dataclass(frozen=True)
class ReleaseCheckpoint:
    """One published checkpoint of a model.

    Attributes:
        file: File (or, for ``format: modules`` and ``tensorflow``, folder) name, placed at
            ``<paths.data>/external/checkpoints/<model>/<file>``.
        format: The key holding the state dict in the file (``bare``: the file is the state dict; ``tensorflow``: a
            folder holding a TensorFlow checkpoint, as the release's ``checkpoints/<name>/``; ``modules``: a
            folder of one bare state dict per submodule, ``<module>.pkl``).
        train_size: The release's training crop (H = W): sets the TLC window.
        url: Where this file is published, when not the release's ``url``.
    """

    file: str
    format: ReleaseFormat
    train_size: int
    url: str | None = None

    def check(self, prefix: str) -> None:
        require(bool(self.file) and "/" not in self.file, f"{prefix}.file", "must be a plain file name")
        _positive(self, prefix, "train_size")


@dataclass(frozen=True)
class ReleaseOutputs:
    """Where a release publishes its result images of one test set, and how their files are named.

    Attributes:
        url: Where the images are published.
        source: Where these facts were read (repository@commit, file, line).
        name_map: The key of ``eval.name_maps`` that maps the release's file names to the test set's pair names
            (``benchmark.evaluation.outputs``); ``None`` where the release does not state them (then
            ``python -m benchmark.evaluate ... outputs=<folder>`` needs ``name_map=<key>``).
    """

    url: str
    source: str
    name_map: str | None = None


@dataclass(frozen=True)
class ReleaseConfig:
    """The authors' released weights of a model (``checkpoint=release``) and how the authors scored them.

    Attributes:
        url: Where the authors publish them.
        source: Where these facts were read (repository, file, issue).
        checkpoints: Training dataset -> its published checkpoint (``train_dataset=`` picks one).
        protocols: Test dataset -> the protocol the authors' own evaluation used, where it differs from the
            dataset's official one; scored beside it (each entry's comment cites the release file and line).
        saves: How the release's test script rounds its outputs to 8-bit PNGs (``ScoringProtocol.quantize``'s
            ``uint8``: ties to even, ``uint8_half_up``: ties up, ``uint8_floor``: truncated); ``python -m
            benchmark.deblur`` saves the same way.
        outputs: Test dataset -> where the authors publish their result images of it and how they are named
            (``python -m benchmark.evaluate model=<name> dataset=<test> outputs=<folder>``).
    """

    url: str
    source: str
    checkpoints: dict[str, ReleaseCheckpoint]
    protocols: dict[str, ScoringProtocol] = field(default_factory=dict)
    saves: Literal["uint8", "uint8_half_up", "uint8_floor"] = "uint8"
    outputs: dict[str, ReleaseOutputs] = field(default_factory=dict)

    def check(self, prefix: str) -> None:
        require(bool(self.checkpoints), f"{prefix}.checkpoints", "must list at least one published checkpoint")
        for what, keys in (("checkpoints", self.checkpoints), ("protocols", self.protocols), ("outputs", self.outputs)):
            unknown = sorted(set(keys) - set(DATASET_NAMES))
            require(
                not unknown, f"{prefix}.{what}", f"keys must be datasets ({', '.join(DATASET_NAMES)}), got {unknown}"
            )
        for name, protocol in self.protocols.items():
            _no_file_quantize(protocol, f"{prefix}.protocols.{name}")

    def checkpoint(self, train_dataset: str | None) -> tuple[str, ReleaseCheckpoint]:
        """The checkpoint trained on ``train_dataset``; ``None`` = the GoPro one, or the only one.

        Raises:
            ConfigError: naming ``train_dataset`` when no such checkpoint is published.
        """
        if train_dataset is None:
            if len(self.checkpoints) == 1:
                train_dataset = next(iter(self.checkpoints))
            elif "gopro" in self.checkpoints:
                train_dataset = "gopro"
        if train_dataset not in self.checkpoints:
            raise ConfigError(
                f"no released checkpoint trained on {train_dataset!r}; published: {', '.join(self.checkpoints)}",
                key="train_dataset",
            )
        return train_dataset, self.checkpoints[train_dataset]


@dataclass(frozen=True)
class ModelConfig:
    """``conf/model/<name>.yaml``.

    Attributes:
        name: The registry key (``models.list_models()``); also the conf file's name, the MLflow run's and the row's.
        overrides: Constructor arguments replacing the factory's (``create_model(name, **overrides)``). Each conf file
            lists every keyword argument of its model's class, ``null`` meaning the registered variant's own value,
            so that ``-S model.overrides.<arg>=<value>`` composes without Hydra's ``+``.
        recipe: The train profile of the model's release (``conf/train/<recipe>.yaml``), used with
            ``recipe=published``; ``None`` for a model with nothing to train.
        release: The authors' released weights, if any.
    """

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    release: ReleaseConfig | None = None

    def constructor_kwargs(self) -> dict[str, Any]:
        """The set ``overrides`` as constructor arguments: ``null`` ones dropped (the variant's own value), YAML lists
        as tuples (the constructors take tuples)."""
        return {k: tuple(v) if isinstance(v, list) else v for k, v in self.overrides.items() if v is not None}


# --- dataset -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchConfig:
    """``dataset.fetch``: how a downloadable benchmark is obtained and normalised (``benchmark.data.fetch``).

    Attributes:
        archive: The archive's file name (also its key in ``checksums.sha256``).
        urls: Download sources, tried in order.
        layout: How to normalise the extracted tree (``benchmark.data.layouts``).
        counts: Expected pairs per split, e.g. ``{"train": 2103, "test": 1111}``.
        blur_folder: GoPro only: ``blur`` (what MPRNet, HINet, MIMO-UNet and MSFS-Net train and test on) or
            ``blur_gamma`` (the original DeepDeblur setting).
    """

    archive: str
    urls: tuple[str, ...]
    layout: FetchLayout
    counts: dict[str, int] = field(default_factory=dict)
    blur_folder: BlurFolder = "blur"

    def check(self, prefix: str) -> None:
        require(bool(self.archive) and "/" not in self.archive, f"{prefix}.archive", "must be a plain file name")
        require(
            set(self.counts) <= {"train", "test"} and all(v > 0 for v in self.counts.values()),
            f"{prefix}.counts",
            f"must map train/test to positive counts, got {self.counts}",
        )


@dataclass(frozen=True)
class SynthConfig:
    """``dataset.synth``: the generator of ``synthblur`` (``benchmark.data.synth``); defaults as in its conf file.

    Attributes:
        seed: Root seed; each image draws from ``default_rng((seed, crc32(photo), k))``, so adding a photo never
            changes the images of another.
        train_photos: Source photos of the train split.
        test_photos: Source photos of the test split; disjoint from ``train_photos``, also by scene.
        train_crops_per_photo: Crops (each with its own trajectory) per train photo.
        test_crops_per_photo: Crops per test photo.
        size: Side of the square crops in pixels.
        max_source_side: Photos whose longer side exceeds this are first downscaled (anti-aliased, in linear light),
            so a crop covers a GoPro-like field of view instead of a featureless close-up (retina, hubble).
        frames: Allowed frame counts ``N``, one drawn per image; odd, so the middle frame is a real frame (GoPro
            averages 7-13 frames).
        extent_px: (min, max) of the trajectory extent in pixels, drawn uniformly per image.
        momentum: Velocity memory of the random walk in [0, 1); higher gives straighter, smoother shake.
        direction_deg: ``None``: the walk's direction is whatever it drew (isotropic); or (min, max), degrees from
            the horizontal: the trajectory is rotated so its main axis (the first principal axis of the frame
            positions) lies at an angle drawn uniformly from that range (a panning camera: horizontal is 0).
        rotation_deg: (min, max) of the in-plane rotation over the exposure, in degrees.
        gamma: Display gamma; frames are averaged in linear light ``x ** gamma``.
        noise_std: (min, max) of the per-image Gaussian sensor-noise standard deviation, on the [0, 1] scale.
        min_crop_std: A candidate crop whose luma standard deviation ([0, 1] scale) is below this is rejected, so
            crops are not flat sky or black background where any method scores well.
        crop_attempts: Candidate crop positions tried before the most textured candidate is taken.
    """

    seed: int = 2024
    # "rocket" sorts last among the train photos, so with 10 crops per photo ``val_count: 10`` holds out exactly its
    # crops: a validation scene the model never trains on.
    train_photos: tuple[Photo, ...] = (
        "brick",
        "camera",
        "grass",
        "gravel",
        "hubble_deep_field",
        "immunohistochemistry",
        "moon",
        "motorcycle_left",
        "motorcycle_right",
        "retina",
        "rocket",
    )
    # Colour photographs, like GoPro's test scenes, plus one grey one.
    test_photos: tuple[Photo, ...] = ("astronaut", "chelsea", "coffee", "coins")
    train_crops_per_photo: int = 10
    test_crops_per_photo: int = 5
    size: int = 256
    max_source_side: int = 640
    frames: tuple[int, ...] = (7, 9, 11, 13)
    extent_px: tuple[float, float] = (3.0, 10.0)
    momentum: float = 0.9
    direction_deg: tuple[float, float] | None = (-20.0, 20.0)
    rotation_deg: tuple[float, float] = (0.0, 0.5)
    gamma: float = 2.2
    noise_std: tuple[float, float] = (0.002, 0.006)
    min_crop_std: float = 0.06
    crop_attempts: int = 32

    def check(self, prefix: str) -> None:
        # numpy seed sequences take non-negative integers
        require(self.seed >= 0, f"{prefix}.seed", f"must be >= 0, got {self.seed}")
        for name in ("train_photos", "test_photos"):
            photos = getattr(self, name)
            require(bool(photos), f"{prefix}.{name}", "must not be empty")
            require(len(set(photos)) == len(photos), f"{prefix}.{name}", f"duplicate photo in {list(photos)}")
        for name in ("train_crops_per_photo", "test_crops_per_photo", "crop_attempts"):
            require(getattr(self, name) >= 1, f"{prefix}.{name}", f"must be >= 1, got {getattr(self, name)}")
        require(self.size >= 16, f"{prefix}.size", f"must be >= 16, got {self.size}")
        require(
            self.max_source_side >= self.size,
            f"{prefix}.max_source_side",
            f"({self.max_source_side}) must be >= size ({self.size})",
        )
        require(
            bool(self.frames) and all(n >= 3 and n % 2 == 1 for n in self.frames),
            f"{prefix}.frames",
            f"must be odd counts >= 3 (a middle frame must exist), got {list(self.frames)}",
        )
        for name in ("extent_px", "rotation_deg", "noise_std"):
            lo, hi = getattr(self, name)
            require(0.0 <= lo <= hi, f"{prefix}.{name}", f"must be (min, max) with 0 <= min <= max, got {[lo, hi]}")
        require(0.0 <= self.momentum < 1.0, f"{prefix}.momentum", f"must be in [0, 1), got {self.momentum}")
        if self.direction_deg is not None:
            lo, hi = self.direction_deg
            require(
                -180.0 <= lo <= hi <= 180.0,
                f"{prefix}.direction_deg",
                f"must be null or (min, max) degrees with -180 <= min <= max <= 180, got {[lo, hi]}",
            )
        require(self.gamma > 0, f"{prefix}.gamma", f"must be > 0, got {self.gamma}")
        require(self.min_crop_std >= 0, f"{prefix}.min_crop_std", f"must be >= 0, got {self.min_crop_std}")


@dataclass(frozen=True)
class DatasetConfig:
    """``conf/dataset/<name>.yaml``. The folder is ``<paths.data>/<name>`` (``benchmark.core.layout``).

    Attributes:
        name: The dataset's key (conf file, folder, stage and table names).
        val_count: The last ``val_count`` training pairs by name are the validation split (never the test split).
        protocol: How its test split is scored.
        fetch: How a downloadable benchmark is fetched; exactly one of ``fetch`` and ``synth`` is set.
        synth: How a generated dataset is made.
    """

    name: str
    protocol: ScoringProtocol
    val_count: int = 0
    fetch: FetchConfig | None = None
    synth: SynthConfig | None = None

    def check(self, prefix: str) -> None:
        require(self.val_count >= 0, f"{prefix}.val_count", f"must be >= 0, got {self.val_count}")
        _no_file_quantize(self.protocol, f"{prefix}.protocol")
        require(
            (self.fetch is None) != (self.synth is None),
            f"{prefix}.fetch",
            "a dataset is either fetched (fetch:) or generated (synth:); give exactly one of the two",
        )


# --- train -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptimizerConfig:
    name: OptimizerName
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def check(self, prefix: str) -> None:
        _positive(self, prefix, "lr", "eps")
        require(all(0 <= b < 1 for b in self.betas), f"{prefix}.betas", f"must lie in [0, 1), got {self.betas}")
        require(self.weight_decay >= 0, f"{prefix}.weight_decay", f"must be >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class SchedulerConfig:
    name: SchedulerName
    step_epochs: int = 500
    gamma: float = 0.5
    min_lr: float = 0.0
    warmup_epochs: int = 0
    power: float = 1.0

    def check(self, prefix: str) -> None:
        _positive(self, prefix, "step_epochs")
        require(self.power > 0, f"{prefix}.power", f"must be > 0, got {self.power}")
        require(0 < self.gamma <= 1, f"{prefix}.gamma", f"must lie in (0, 1], got {self.gamma}")
        require(self.min_lr >= 0, f"{prefix}.min_lr", f"must be >= 0, got {self.min_lr}")
        require(self.warmup_epochs >= 0, f"{prefix}.warmup_epochs", f"must be >= 0, got {self.warmup_epochs}")


@dataclass(frozen=True)
class TrainConfig:
    """``conf/train/<profile>.yaml``. Fields marked *execution* say how a run executes, not what it learns: they stay
    as set under ``recipe=published``, are left out of the checkpoint fingerprint and of the train stages' inputs
    (a run resumes, and a stage is not re-run, under new values of them). ``cache`` serves bit-identical pixels;
    ``compile`` runs the same graph through ``torch.compile``."""

    profile: str
    epochs: int
    max_steps: int | None
    batch_size: int
    crop_size: int
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    checkpoint_every: int = field(metadata=_EXECUTION)
    val_every: int = field(metadata=_EXECUTION)
    log_every: int = field(metadata=_EXECUTION)
    num_workers: int = field(default=0, metadata=_EXECUTION)
    device: str = field(default="auto", metadata=_EXECUTION)
    bf16: bool = False
    channels_last: bool = False
    compile: bool = field(default=False, metadata=_EXECUTION)
    cache: bool = field(default=False, metadata=_EXECUTION)
    resume: Literal["auto"] | bool = field(default="auto", metadata=_EXECUTION)
    augment: Augment = "flips"

    def check(self, prefix: str) -> None:
        _positive(self, prefix, "epochs", "batch_size", "crop_size", "checkpoint_every", "val_every", "log_every")
        require(
            self.max_steps is None or self.max_steps > 0,
            f"{prefix}.max_steps",
            f"must be null or > 0, got {self.max_steps}",
        )
        require(self.num_workers >= 0, f"{prefix}.num_workers", f"must be >= 0, got {self.num_workers}")
        require(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            f"{prefix}.device",
            f"must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )


EXECUTION_TRAIN_KEYS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("execution")
)
"""``train`` keys that say how a run executes, not what it learns (see :class:`TrainConfig`)."""


# --- eval, tracking, pipeline, figures, paths ---------------------------------------------------------------------


@dataclass(frozen=True)
class TLCWindowConfig:
    """``eval.tlc_window``: the window of TLC's local statistics, ``base_ratio`` x the training crop.

    Attributes:
        base_ratio: 1.5 in TLC's experiments (Chu et al. 2022).
        train_size: The training crop (H = W) the window scales from; ``None`` = the release's ``train_size`` for
            released weights, else the ``train.crop_size`` recorded in the checkpoint.
    """

    base_ratio: float = 1.5
    train_size: int | None = None

    def check(self, prefix: str) -> None:
        require(self.base_ratio >= 1, f"{prefix}.base_ratio", f"must be >= 1, got {self.base_ratio}")
        require(
            self.train_size is None or self.train_size > 0,
            f"{prefix}.train_size",
            f"must be null or > 0, got {self.train_size}",
        )


@dataclass(frozen=True)
class NameMap:
    """How one release layout names its result files: ``pattern`` (a Python regular expression) must match a file's
    path relative to the folder, without its ``.png`` suffix, in full (``/`` between folders); ``name`` (a
    ``str.format`` template over the pattern's named groups) is then the test pair's name
    (``benchmark.data.pairs``: e.g. GoPro ``GOPR0384_11_00_000001``, RealBlur ``scene003_blur_1``).

    Attributes:
        pattern: E.g. ``(?P<sequence>[^/]+)-(?P<frame>[0-9]+)`` for ``GOPR0384_11_00-000001.png``.
        name: E.g. ``{sequence}_{frame}``.
        layout: The layout in words, for messages and docs (``<sequence>-<frame>.png``).
    """

    pattern: str
    name: str
    layout: str

    def check(self, prefix: str) -> None:
        import re
        import string

        try:
            groups = set(re.compile(self.pattern).groupindex)
        except re.error as err:
            raise ConfigError(f"not a regular expression: {err}", key=f"{prefix}.pattern") from None
        fields = {f for _, f, _, _ in string.Formatter().parse(self.name) if f is not None}
        require(bool(fields), f"{prefix}.name", f"must use at least one group of pattern, got {self.name!r}")
        require(
            fields <= groups,
            f"{prefix}.name",
            f"uses {sorted(fields - groups)}, which pattern does not capture (its groups: {sorted(groups)})",
        )


@dataclass(frozen=True)
class EvalConfig:
    """``eval``: how ``benchmark.evaluate`` runs and scores a model.

    Attributes:
        batch_size: Test images per forward pass.
        device: ``auto`` (CUDA when there is one), ``cpu``, ``cuda`` or ``cuda:N``.
        score_workers: Processes that score restored images while the model restores the next ones
            (``benchmark.scoring.pool``); ``None`` = the cores this process may use, 0 = score in the evaluating
            process. Scores are the same for any value (tested).
        tlc_window: TLC's local window.
        samples: Test images (the first, in name order) whose input, restoration and ground truth the evaluation's
            MLflow run keeps as images (0: none).
        sample_crop: Side of the centre crop those images show (px; the whole image where it is smaller).
        name_maps: How folders of result images are named (``outputs=<folder>``): rule name -> a :class:`NameMap`.
            A release's ``outputs`` entries and the ``name_map=`` argument name one of them.
    """

    batch_size: int = 1
    device: str = "auto"
    score_workers: int | None = None
    tlc_window: TLCWindowConfig = field(default_factory=TLCWindowConfig)
    samples: int = 3
    sample_crop: int = 256
    name_maps: dict[str, NameMap] = field(default_factory=dict)

    def check(self, prefix: str) -> None:
        _positive(self, prefix, "batch_size")
        _positive(self, prefix, "sample_crop")
        require(self.samples >= 0, f"{prefix}.samples", f"must be >= 0 (0: no images), got {self.samples}")
        require(
            self.score_workers is None or self.score_workers >= 0,
            f"{prefix}.score_workers",
            f"must be null (this machine's cores) or >= 0 (0: in the evaluating process), got {self.score_workers}",
        )
        require(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            f"{prefix}.device",
            f"must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow: ``uri`` null = ``sqlite:///<repo>/mlflow.db``; the ``MLFLOW_TRACKING_URI`` environment variable wins."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = "msfs-bench"


@dataclass(frozen=True)
class PipelineConfig:
    """What ``dvc repro`` runs: ``fetch@<dataset>``, ``train@<model>-<train dataset>``,
    ``evaluate@<model>-<train dataset>-<test dataset>`` (plain and TLC) for every combination, then report and figures.
    """

    models: tuple[str, ...]
    train_datasets: tuple[str, ...]
    datasets: tuple[str, ...]

    def check(self, prefix: str) -> None:
        for name in ("models", "train_datasets", "datasets"):
            items = getattr(self, name)
            require(len(set(items)) == len(items), f"{prefix}.{name}", f"lists an item twice: {list(items)}")
        missing = [d for d in self.train_datasets if d not in self.datasets]
        require(
            not missing,
            f"{prefix}.train_datasets",
            f"{missing} must also be in {prefix}.datasets (fetched, and scored on their own test split)",
        )


@dataclass(frozen=True)
class FiguresConfig:
    """The figures stage: Figs. 1 and 6 (entropy of low/high frequencies), 5 and 7 (visual grids).

    Attributes:
        model: The pipeline model whose outputs Fig. 6 compares with the sharp images.
        sigma: Gaussian low-pass (px): LF = low-pass, HF = image - low-pass.
        crop: Side of the crop shown in the visual comparisons.
        image: Test image of the visual comparisons (``None``: the first by name).
    """

    model: str
    sigma: float = 2.0
    crop: int = 96
    image: str | None = None

    def check(self, prefix: str) -> None:
        _positive(self, prefix, "sigma", "crop")


@dataclass(frozen=True)
class PathsConfig:
    """Where the harness reads and writes; relative paths are relative to the repository root. Every path below these
    roots is spelled once, in ``benchmark.core.layout``."""

    data: str = "data"
    checkpoints: str = "checkpoints"
    results: str = "results"
    cache: str = "cache"
