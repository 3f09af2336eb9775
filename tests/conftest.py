"""Shared fixtures: the folder of shared test media and the bundled models, loaded once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SMILE_VIDEO = SHARED / "media" / "smile_video.mp4"
EXPRESSIONS = SHARED / "media" / "expressions"


def need(path: Path) -> Path:
    """`path`, or skip the test saying which shared file is missing."""
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared test media live beside the repository)")
    return path


@pytest.fixture(scope="session")
def smile_classifier():
    from core.model import Classifier

    return Classifier(REPO / "models" / "smile")


@pytest.fixture(scope="session")
def expression_classifier():
    from core.model import Classifier

    return Classifier(REPO / "models" / "expression")


@pytest.fixture(scope="session")
def shipped_neutral_offset() -> float:
    """The bundled expression model's own neutral offset (its `class_bias`), which a new model may change."""
    import json

    return json.loads((REPO / "models" / "expression" / "metadata.json").read_text())["class_bias"][4]


@pytest.fixture(scope="session")
def smile_frames() -> list:
    """The RGB frames of ../shared/media/smile_video.mp4 (neutral, then smiling, then neutral)."""
    import av

    with av.open(str(need(SMILE_VIDEO))) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="session")
def expressions_dir() -> Path:
    """../shared/media/expressions: one single-face photo per expression (angry.jpg, happy.jpg, ...)."""
    return need(EXPRESSIONS)


@pytest.fixture(scope="session")
def genki_dir() -> Path:
    """../shared/datasets/genki4k (GENKI-4K in its own layout)."""
    return need(SHARED / "datasets" / "genki4k")


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """../shared/media: the face video and the posed photos."""
    return need(SHARED / "media")
