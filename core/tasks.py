"""The registry of recognition tasks: adding a task means adding an entry here (and a loader)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Task:
    """What a task predicts and how its faces are presented to the model."""

    name: str
    title: str
    class_names: tuple[str, ...]          # folder / model output order
    display_names: tuple[str, ...]        # what the UI shows for each class
    colors: tuple[tuple[int, int, int], ...]  # RGB colour per class for overlays
    input_size: int
    color_mode: str                       # "gray" or "rgb"
    default_dataset: str                  # folder name under a datasets root
    default_arch: str
    positive_class: str | None = None     # binary tasks: the class a threshold applies to
    aliases: dict[str, str] = field(default_factory=dict)  # other folder names -> class name

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def hex_colors(self) -> list[str]:
        """The class colours as '#rrggbb' (charts)."""
        return ["#%02x%02x%02x" % c for c in self.colors]

    @property
    def is_binary(self) -> bool:
        return self.positive_class is not None

    def class_index(self, name: str) -> int:
        """Index of a class given its name, display name or an alias (case-insensitive)."""
        key = name.strip().lower().replace(" ", "_").replace("-", "_")
        key = self.aliases.get(key, key)
        for i, (cls, disp) in enumerate(zip(self.class_names, self.display_names)):
            if key in (cls, disp.replace(" ", "_")):
                return i
        raise KeyError(f"'{name}' is not a class of task '{self.name}' ({', '.join(self.class_names)})")


SMILE = Task(
    name="smile",
    title="Smile",
    class_names=("non_smile", "smile"),
    display_names=("no smile", "smile"),
    colors=((90, 140, 255), (255, 200, 0)),
    input_size=64,
    color_mode="gray",
    default_dataset="genki4k",
    default_arch="compact",
    positive_class="smile",
    # folder names other collections use: SMILEsmileD's positives/negatives, happy/neutral studio sets
    aliases={"nonsmile": "non_smile", "no_smile": "non_smile", "not_smile": "non_smile", "nosmile": "non_smile",
             "not_smiling": "non_smile", "non_smiling": "non_smile", "nonsmiling": "non_smile",
             "negative": "non_smile", "negatives": "non_smile", "neutral": "non_smile",
             "0": "non_smile", "1": "smile", "smiling": "smile", "smiles": "smile",
             "positive": "smile", "positives": "smile", "happy": "smile"},
)

EXPRESSION = Task(
    name="expression",
    title="Expression",
    class_names=("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
    display_names=("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
    colors=((230, 60, 60), (120, 170, 40), (150, 90, 200), (255, 200, 0),
            (180, 180, 180), (70, 120, 230), (255, 130, 30)),
    input_size=48,
    color_mode="gray",
    default_dataset="fer2013",
    default_arch="expression",
    aliases={"angry": "angry", "anger": "angry", "disgusted": "disgust", "fearful": "fear",
             "afraid": "fear", "happiness": "happy", "sadness": "sad", "surprised": "surprise",
             "contempt": "contempt"},
)

TASKS: dict[str, Task] = {t.name: t for t in (SMILE, EXPRESSION)}


def get_task(name: str) -> Task:
    """The task called `name`, or a clear error listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task '{name}'; known tasks: {', '.join(TASKS)}") from None
