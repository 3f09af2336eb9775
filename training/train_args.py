"""The command line of `python -m training.train`: every option named after its config field."""
from __future__ import annotations

import argparse
from dataclasses import fields

from core.preprocess import EQUALIZE, MAX_INPUT, MIN_INPUT
from core.tasks import TASKS
from training.baselines import BASELINES
from training.config import Augment, TrainConfig


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _setting(group, defaults, name: str, text: str) -> None:
    """An option for a config field: its type and default come from the dataclass."""
    value = getattr(defaults, name)
    group.add_argument(_flag(name), type=type(value), default=value,
                       help=f"{text} (default: %(default)s)".lstrip())


def build_parser() -> argparse.ArgumentParser:
    """The command line, every option with its help and default."""
    from training.architectures import ARCHITECTURES, DEFAULT_WIDTH
    from training.config import CLASS_WEIGHTS, DISTILL_ON, OPTIMIZERS, PRECISIONS, SCHEDULES

    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m training.train", description="Train a Grin model: `python -m training.train --task smile --data <dir> --out <run dir>`.",
        epilog="Every setting is checked before a run starts. The shipped models' exact commands are in "
               "models/<task>/README.md.")
    run = p.add_argument_group("run")
    _setting(run, d, "task", " or ".join(TASKS))
    run.add_argument("--data", default="", help="dataset folder (or fer2013.csv)")
    run.add_argument("--extra-data", action="append", default=[], help="more training data (repeatable)")
    run.add_argument("--out", required=True, help="run folder")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    run.add_argument("--max-runs", type=int, default=0,
                     help="queue: wait until fewer than this many runs in --out's folder train (0: start now)")
    run.add_argument("--init", default="",
                     help="start from this model folder's weights: a fine-tune, or transfer from the other task "
                          "(only the output layer starts fresh)")
    _setting(run, d, "limit", "use at most this many training images, for a quick run; 0 is all")
    _setting(run, d, "precision", f"{', '.join(PRECISIONS)}; auto: float16 on a GPU, bfloat16 on a CPU with "
                                  "bfloat16 instructions, else float32; models are saved in float32")

    data = p.add_argument_group("faces and split")
    _setting(data, d, "faces", "how each image becomes a face: auto, detect, cropped or whole")
    _setting(data, d, "val_fraction", "validation share carved from training")
    _setting(data, d, "test_fraction", "test share, for datasets without an official test split")
    _setting(data, d, "split_seed", "seed of the split; keep it to compare or ensemble runs")
    _setting(data, d, "main_repeat", "with --extra-data: show the main dataset's training faces this many times "
                                     "per epoch, 1-10")
    _setting(data, d, "fer_negatives", "smile: this fraction of FER-2013's angry, disgust, fear, sad and surprise "
                                       "faces joins as no-smile faces (with FER-2013 as --data or --extra-data)")

    net = p.add_argument_group("network")
    widths = ", ".join(f"{k} {v}" for k, v in DEFAULT_WIDTH.items())
    net.add_argument("--arch", default="", help=f"{', '.join((*ARCHITECTURES, *BASELINES))} (default: the task's; "
                                                 "baseline, hog_svm, hog_logreg and mlp are the seed reports' "
                                                 "models, for comparison)")
    _setting(net, d, "width", f"channels of the first stage; 0: the --init model's, else the architecture's "
                              f"({widths})")
    _setting(net, d, "input_size", f"side of the face crops in pixels, {MIN_INPUT}-{MAX_INPUT}; 0: the --init model's, "
                                   "else the task's (" + ", ".join(f"{t.name} {t.input_size}" for t in TASKS.values()) + ")")
    _setting(net, d, "equalize", f"contrast normalisation of each face crop, {' or '.join(EQUALIZE)}; empty: the "
                                 "--init model's, else none")
    _setting(net, d, "dropout", "before the output layer")
    _setting(net, d, "l2", "L2 penalty on the weights")

    opt = p.add_argument_group("optimisation")
    _setting(opt, d, "epochs", "")
    _setting(opt, d, "batch_size", "")
    _setting(opt, d, "optimizer", ", ".join(OPTIMIZERS))
    _setting(opt, d, "lr", "peak learning rate")
    _setting(opt, d, "schedule", f"{', '.join(SCHEDULES)}: the learning rate after the warm-up")
    _setting(opt, d, "warmup_epochs", "linear warm-up")
    _setting(opt, d, "weight_decay", "decoupled weight decay")
    _setting(opt, d, "label_smoothing", "")
    _setting(opt, d, "class_weights", f"{', '.join(CLASS_WEIGHTS)}: weigh rare classes up (sqrt: by "
                                      "1/sqrt(count); per-collection: balance the classes within the main "
                                      "dataset and within the extra data, each keeping its share)")
    _setting(opt, d, "seed", "weights, shuffling and augmentation")
    _setting(opt, d, "patience", "stop after this many epochs without a better validation accuracy; 0 is off")
    _setting(opt, d, "swa_epochs", "average the weights of the last N epochs (SWA), kept only if it validates "
                                   "better; 0 is off")
    _setting(opt, d, "swa_lr", "constant learning rate for the averaged epochs; 0: the schedule runs to the end")
    opt.add_argument("--teacher", action="append", default=[],
                     help="distil: this model folder (or ensemble) labels the training faces with its probabilities; "
                          "of the run's task, or an expression model teaching a smile run through its P(happy); "
                          "repeatable: the teachers' probabilities are averaged")
    _setting(opt, d, "distill", "weight of the teachers' probabilities in the targets, 0..1 (with --teacher)")
    opt.add_argument("--distill-on", choices=DISTILL_ON, default=d.distill_on,
                     help="the faces the teacher labels: all, or only the --extra-data collections' (the main "
                          "dataset's faces keep their true labels) (default: %(default)s)")
    opt.add_argument("--fit-val", action="store_true",
                     help="final model: train on the validation faces too, keep the last epoch, and keep the "
                          "--init model's decision threshold (choose the recipe on validation first)")

    aug = p.add_argument_group("augmentation (training faces only)")
    aug.add_argument("--no-flip", action="store_true", help="no horizontal flips")
    a = Augment()
    _setting(aug, a, "shift", "largest shift, a fraction of the side")
    _setting(aug, a, "rotate", "largest rotation in degrees")
    _setting(aug, a, "zoom", "largest zoom in or out, a fraction")
    _setting(aug, a, "brightness_contrast", "strength of random brightness and contrast")
    _setting(aug, a, "blur", "probability of a down-and-up resize (low-resolution cameras)")
    _setting(aug, a, "erasing", "probability of random erasing")
    _setting(aug, a, "mixup", "mixup alpha; 0 is off")
    _setting(aug, a, "loose", "probability of a looser framing, cut from a wider crop of the photo")
    _setting(aug, a, "tight", "probability of a tighter framing, down to the eyes-to-chin area (close-up crops)")
    _setting(aug, a, "jpeg", "probability of strong JPEG compression (quality 10-50)")
    _setting(aug, a, "jpeg_scale", "compress each face at a random scale from this fraction of its side to 1, "
                                   "as a smaller source picture is compressed before it is enlarged")
    _setting(aug, a, "deblock", "blur the compressed faces whose JPEG block grid passes serving's gate by this "
                                "sigma (px at the input size), and serve the model so (its preprocess.deblock); 0 is off")

    ev = p.add_argument_group("evaluation")
    ev.add_argument("--no-tta", action="store_true", help="no flip averaging at test time")
    run.add_argument("--verbose", action="store_true", help="also show TensorFlow's and Keras's own log lines and warnings")
    ev.add_argument("--skip-test", action="store_true",
                    help="leave the test split unread at the end (while choosing a recipe on validation)")
    return p


def parse_args(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    """The config from the command line: every option is named after its config field (two are negated)."""
    ns = build_parser().parse_args(argv)
    args = vars(ns)
    aug = Augment(flip=not args["no_flip"], **{f.name: args[f.name] for f in fields(Augment) if f.name != "flip"})
    settings = {f.name: args[f.name] for f in fields(TrainConfig) if f.name in args}
    cfg = TrainConfig(**settings, augment=aug, tta_flip=not args["no_tta"])
    return cfg, ns
