"""Where a task's dataset is: its configured path ($GRIN_DATA_<NAME>), the shared folder beside the
repository, and where to get it when it is missing."""
from __future__ import annotations

import os
from pathlib import Path

from core.registry import REPO
from core.tasks import get_task

ENV = {"genki4k": "GRIN_DATA_GENKI4K", "fer2013": "GRIN_DATA_FER2013"}
WHERE_TO_GET = {
    "genki4k": "GENKI-4K (4000 face photos labelled smile / non-smile, with head pose) is published by the "
               "Machine Perception Laboratory, UC San Diego: http://mplab.ucsd.edu (\"The MPLab GENKI Database\"). "
               "Unpack it so that the folder holds labels.txt and files/file0001.jpg ...",
    "fer2013": "FER-2013 (48x48 faces, 7 expressions) is on Kaggle: the original fer2013.csv in the "
               "\"Challenges in Representation Learning: Facial Expression Recognition Challenge\" "
               "(kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge), "
               "or as image folders train/<class>/ and test/<class>/ (kaggle.com/datasets/msambare/fer2013). "
               "Point Grin at the folder or at fer2013.csv.",
}


def shared_dataset(name: str) -> Path:
    """The dataset's folder in ../shared/datasets beside the repository."""
    return REPO.parent / "shared" / "datasets" / name


def default_data_path(task_name: str) -> str:
    """The task's dataset: $GRIN_DATA_GENKI4K / $GRIN_DATA_FER2013 if set, else ../shared/datasets/<name>
    when it exists, else ''."""
    name = get_task(task_name).default_dataset
    configured = os.environ.get(ENV.get(name, ""), "")
    if configured:
        return configured
    shared = shared_dataset(name)
    return str(shared) if shared.exists() else ""


def missing_message(task_name: str, path: str) -> str:
    """What to tell a user whose dataset path does not exist (Markdown)."""
    name = get_task(task_name).default_dataset
    where = WHERE_TO_GET.get(name, "")
    head = f"No dataset at `{path}`." if path else "No dataset folder given."
    env = ENV.get(name)
    return (f"{head} Type the folder of the dataset above"
            + (f", or set `{env}` before starting the app" if env else "") + "."
            + (f"\n\n{where}" if where else "")
            + "\n\nAny folder of class sub-folders works too (e.g. `smile/` and `non_smile/`).")
