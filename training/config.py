"""Training settings as a dataclass, checked before any run starts."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core.preprocess import EQUALIZE, MAX_DEBLOCK, MAX_INPUT, MIN_INPUT
from core.tasks import TASKS, get_task

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant", "step")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
CLASS_WEIGHTS = ("none", "balanced", "sqrt", "per-collection")
# (teacher task, run task) pairs besides a run's own task: an expression model's P(happy) teaches smiles
CROSS_TASK_TEACHERS = {("expression", "smile")}
DISTILL_ON = ("all", "extra")   # the training faces a teacher labels (extra: only the --extra-data collections')
JPEG_SCALE_MIN = 0.25   # --jpeg-scale: below this the 8x8 blocks are larger than a quarter of the face


class ConfigError(ValueError):
    """A training setting that cannot work; the message names it and says why."""


@dataclass
class Augment:
    flip: bool = True
    shift: float = 0.08          # fraction of the side
    rotate: float = 12.0         # degrees
    zoom: float = 0.15           # +- fraction: a little tighter or looser (margins filled by reflection)
    brightness_contrast: float = 0.3
    blur: float = 0.3            # probability of a down-up resize (low-resolution cameras)
    erasing: float = 0.0         # probability of random erasing
    mixup: float = 0.0           # mixup alpha; 0 is off
    loose: float = 0.0           # probability of a looser framing (up to 1.8x), cut from a wider crop of the photo
    tight: float = 0.0           # probability of a tighter framing, down to eyes-to-chin (close-up and LFW-style crops)
    jpeg: float = 0.0            # probability of strong JPEG compression (quality 10-50: webcams, messaging apps)
    jpeg_scale: float = 1.0      # compress at a random scale down to this fraction of the crop (the source picture's)
    deblock: float = 0.0         # blur (sigma, px) the compressed faces whose block grid passes serving's gate; 0 is off


def teacher_list(value: str | list[str] | None) -> list[str]:
    """A run's teachers as a list (runs made while a run had at most one recorded it as a string)."""
    if isinstance(value, str):
        return [value] if value else []
    return list(value or [])


@dataclass
class TrainConfig:
    task: str = "smile"
    data: str = ""
    extra_data: list[str] = field(default_factory=list)  # more training data (e.g. FER-2013 for smile)
    init: str = ""               # start from this model folder's weights (fine-tuning)
    main_repeat: int = 1         # show the main dataset's training faces this many times per epoch
    arch: str = ""               # default: the task's
    width: int = 0               # 0: the architecture's default
    input_size: int = 0          # face side in pixels; 0: the task's (smile 64, expression 48)
    equalize: str = ""           # face crops' contrast normalisation (core.preprocess.EQUALIZE); "": --init's, else none
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 2e-3
    schedule: str = "cosine"
    warmup_epochs: int = 1
    weight_decay: float = 5e-4
    l2: float = 0.0
    dropout: float = 0.3
    label_smoothing: float = 0.05
    class_weights: str = "none"
    augment: Augment = field(default_factory=Augment)
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 42               # weights, shuffling and augmentation
    split_seed: int = 42         # the train/validation/test split: keep it to compare or ensemble runs
    limit: int = 0               # use at most this many training images (quick runs); 0 is all
    faces: str = "auto"
    precision: str = "auto"
    patience: int = 0            # early stopping on validation accuracy; 0 is off
    tta_flip: bool = True
    swa_epochs: int = 0          # average the weights of the last N epochs (SWA); 0 is off
    swa_lr: float = 0.0          # constant rate for the averaged epochs; 0: the schedule runs to the end
    fit_val: bool = False        # final model: train on the validation faces too and keep the last epoch
    fer_negatives: float = 0.0   # smile: this fraction of FER-2013's other expressions joins as no-smile faces
    skip_test: bool = False      # leave the test split unread at the end (while choosing a recipe on validation)
    teacher: list[str] = field(default_factory=list)  # distil from these model folders' mean probabilities
    distill: float = 0.5         # weight of the teachers' probabilities in the targets (with a teacher)
    distill_on: str = "all"      # the faces the teacher labels: "all", or only the --extra-data collections' ("extra")

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = Augment(**self.augment)
        self.teacher = teacher_list(self.teacher)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        if "split_seed" not in d and "seed" in d:   # runs made before the two seeds were separate
            d = {**d, "split_seed": d["seed"]}
        return cls(**d)

    def resolved_arch(self) -> str:
        return self.arch or get_task(self.task).default_arch

    def init_meta(self):
        """The --init model's ModelMeta (None when there is no metadata.json beside it)."""
        from core.model import META_FILE, ModelError, ModelMeta

        if not (self.init and (Path(self.init) / META_FILE).is_file()):
            return None
        try:
            return ModelMeta.load(Path(self.init))
        except ModelError as exc:
            raise ConfigError(f"--init {exc}") from None

    def resolve_from_init(self) -> None:
        """Width, input size or equalisation unset with --init: take the --init model's (a fine-tune or
        transfer must match its width; keeping its input size and contrast keeps what its filters learned)."""
        meta = self.init_meta() if self.init and not (self.width and self.input_size and self.equalize) else None
        if meta is None:
            return
        if not self.equalize:
            self.equalize = str(meta.preprocess.get("equalize", "none"))
        if not self.width:
            self.width = int(meta.extra.get("train_config", {}).get("width", 0) or 0)
        if not self.input_size:
            size = int(meta.preprocess.get("input_size", 0) or 0)
            self.input_size = 0 if size == get_task(self.task).input_size else size

    def _check_init(self, need) -> None:
        """--init copies weights layer by layer (any task: only a different head is re-initialised), so the
        network must be built the same way."""
        from training.architectures import DEFAULT_WIDTH
        from training.baselines import BASELINES

        arch = self.resolved_arch()
        need(arch not in BASELINES, f"--init starts a network from a model's weights; the '{arch}' baseline "
                                    "is not a network: leave --init out")
        meta = self.init_meta()
        if meta is None:   # no metadata: load_init_weights still refuses a network that does not match
            return
        source = meta.arch
        need(not source or source == arch, f"--init {self.init}: a '{source}' network, and this run builds "
                                           f"'{arch}': choose that architecture (--arch {source}), or leave --init out")
        made = meta.extra.get("train_config")
        if made is not None and self.width:
            theirs = made.get("width") or DEFAULT_WIDTH.get(arch, 0)
            need(self.width == theirs, f"--init {self.init}: a network of width {theirs}, and this run asks for "
                                       f"--width {self.width}: leave --width out to take that model's")
        mode, ours = meta.preprocess.get("color_mode", ""), get_task(self.task).color_mode
        need(not mode or mode == ours, f"--init {self.init}: a {mode} model, and task '{self.task}' sees {ours} faces")

    def validate(self) -> None:
        """Raise ConfigError for the first setting that cannot work."""
        from training.architectures import ARCHITECTURES

        def need(ok: bool, msg: str):
            if not ok:
                raise ConfigError(msg)

        need(self.task in TASKS, f"task must be one of {', '.join(TASKS)}, not '{self.task}'")
        need(bool(self.data), "a dataset path is required")
        from training.baselines import BASELINES

        known = (*ARCHITECTURES, *BASELINES)
        need(self.resolved_arch() in known, f"architecture must be one of {', '.join(known)}, not '{self.arch}'")
        need(1 <= self.epochs <= 1000, f"epochs must be between 1 and 1000, not {self.epochs}")
        need(1 <= self.batch_size <= 4096, f"batch size must be between 1 and 4096, not {self.batch_size}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        need(0 < self.lr <= 1.0, f"learning rate must be in (0, 1], not {self.lr}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}")
        need(0 <= self.warmup_epochs <= 100, f"warm-up epochs must be between 0 and 100, not {self.warmup_epochs}")
        need(0 <= self.weight_decay < 1, "weight decay must be in [0, 1)")
        need(0 <= self.l2 < 1, "L2 must be in [0, 1)")
        need(0 <= self.dropout < 1, f"dropout must be in [0, 1), not {self.dropout}")
        need(0 <= self.label_smoothing < 0.5, "label smoothing must be in [0, 0.5)")
        need(self.class_weights in CLASS_WEIGHTS, f"class weights must be one of {', '.join(CLASS_WEIGHTS)}")
        for label, seed in (("seed", self.seed), ("split seed", self.split_seed)):
            need(0 <= seed < 2**32, f"{label} must be between 0 and {2**32 - 1}, not {seed}")
        need(0 < self.val_fraction < 0.5 and 0 <= self.test_fraction < 0.5
             and self.val_fraction + self.test_fraction < 0.8, "validation/test fractions must leave training data")
        need(not self.init or (Path(self.init) / "model.keras").is_file(),
             f"--init {self.init}: no model.keras there to start from")
        if self.init:
            self._check_init(need)
        need(1 <= self.main_repeat <= 10, "main dataset repeat must be between 1 and 10")
        need(0 <= self.swa_epochs <= self.epochs, f"SWA epochs must be between 0 and the epochs ({self.epochs})")
        need(0 <= self.swa_lr <= 1.0, f"SWA learning rate must be in [0, 1], not {self.swa_lr}")
        if self.fit_val:
            why = "--fit-val trains on the validation faces, so nothing is left to"
            need(not self.patience, f"{why} stop early on: use a fixed number of epochs (patience 0)")
            need(not self.swa_epochs, f"{why} judge the weight average on: leave SWA off")
            need(self.resolved_arch() not in BASELINES, f"{why} report a baseline's validation figures on: "
                 "train baselines without it")
        need(0 <= self.fer_negatives <= 1, f"FER-2013 negatives must be a fraction in [0, 1], not {self.fer_negatives}")
        need(not self.fer_negatives or self.task == "smile",
             "FER-2013 negatives (other expressions as no-smile faces) are for the smile task")
        need(len(set(self.teacher)) == len(self.teacher), "each --teacher is named once")
        for folder in self.teacher:
            need((Path(folder) / "model.keras").is_file(), f"--teacher {folder}: no model.keras there to learn from")
            teacher = _metadata(Path(folder))
            teacher_task = str(teacher.get("task", "unknown"))
            need(teacher_task == self.task or (teacher_task, self.task) in CROSS_TASK_TEACHERS,
                 f"--teacher {folder} is a model for the {teacher_task} task, which cannot teach a run of "
                 f"the {self.task} task (a teacher is of the run's task, or an expression model teaching a smile run)")
            pre = teacher.get("preprocess")
            cut = str(pre.get("equalize", "none")) if isinstance(pre, dict) else "none"
            need(cut == (self.equalize or "none"), f"--teacher {folder} takes faces equalised '{cut}', and this "
                                                   f"run cuts them '{self.equalize or 'none'}': choose --equalize {cut}")
        need(0 <= self.distill <= 1, f"the distillation weight must be in [0, 1], not {self.distill}")
        need(self.distill_on in DISTILL_ON, f"--distill-on must be one of {', '.join(DISTILL_ON)}, not "
                                            f"'{self.distill_on}'")
        need(self.distill_on == "all" or (self.teacher and self.extra_data),
             "--distill-on extra leaves the main dataset's faces to their true labels and lets the teacher label "
             "the --extra-data faces: it needs both --teacher and --extra-data")
        need(not self.teacher or self.distill <= 0.5 or self.class_weights in ("none", "per-collection"),
             "class weights follow each face's strongest target, which is its true label only while the "
             "teacher's weight is at most 0.5: lower --distill, or use --class-weights none or per-collection "
             "(row weights by the true label)")
        need(self.limit >= 0, "limit must be 0 (all) or positive")
        need(self.faces in ("auto", "detect", "cropped", "whole"), "faces must be auto, detect, cropped or whole")
        need(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        need(self.width >= 0 and self.width <= 512, "width must be 0 (default) to 512")
        need(self.input_size == 0 or MIN_INPUT <= self.input_size <= MAX_INPUT,
             f"input size must be 0 (the task's) or {MIN_INPUT} to {MAX_INPUT} pixels, not {self.input_size}")
        need(self.equalize in ("", *EQUALIZE), f"equalize must be one of {', '.join(EQUALIZE)}, not '{self.equalize}'")
        a = self.augment
        need(0 <= a.shift <= 0.4 and 0 <= a.rotate <= 45 and 0 <= a.zoom <= 0.5,
             "augmentation strengths out of range (shift <= 0.4, rotate <= 45, zoom <= 0.5)")
        need(0 <= a.brightness_contrast <= 1 and 0 <= a.blur <= 1 and 0 <= a.erasing <= 1 and 0 <= a.mixup <= 1
             and 0 <= a.loose <= 1 and 0 <= a.tight <= 1 and 0 <= a.jpeg <= 1,
             "augmentation probabilities must be in [0, 1]")
        need(JPEG_SCALE_MIN <= a.jpeg_scale <= 1,
             f"jpeg scale must be in [{JPEG_SCALE_MIN}, 1], a fraction of the face crop's side, not {a.jpeg_scale}")
        need(0 <= a.deblock <= MAX_DEBLOCK,
             f"deblock must be a blur sigma from 0 (off) to {MAX_DEBLOCK} px, not {a.deblock}")
        need(not a.deblock or a.jpeg, "deblock blurs compressed training faces: it needs --jpeg above 0")


def _metadata(folder: Path) -> dict:
    """A model folder's metadata ({} when it cannot be read)."""
    import json

    try:
        meta = json.loads((folder / "metadata.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}
