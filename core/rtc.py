"""ICE servers for the webcam's WebRTC connection, from the environment."""
from __future__ import annotations

import json
import os

# Set on a hosted deployment (Hugging Face Spaces sets SPACE_ID); streamlit-webrtc then finds
# TURN credentials itself from CLOUDFLARE_TURN_KEY_ID/_API_TOKEN, TWILIO_ACCOUNT_SID/_AUTH_TOKEN or HF_TOKEN.
HOSTED_ENV = ("SPACE_ID", "CLOUDFLARE_TURN_KEY_ID", "TWILIO_ACCOUNT_SID")


def rtc_configuration(env: dict[str, str] | None = None) -> dict:
    """The RTCConfiguration for both the browser and the server.

    GRIN_ICE=none (or running locally): no ICE servers, host candidates only (no network, no delay).
    GRIN_ICE=auto (or hosted): no "iceServers" key, so streamlit-webrtc fills it from the
    Cloudflare / Twilio / Hugging Face credentials in the environment (else Google's STUN).
    GRIN_ICE='[{"urls": "turn:..."}]': exactly these servers.
    """
    env = os.environ if env is None else env
    choice = env.get("GRIN_ICE", "").strip()
    if choice.lower() == "none":
        return {"iceServers": []}
    if choice.lower() == "auto":
        return {}
    if choice:
        try:
            servers = json.loads(choice)
        except json.JSONDecodeError:
            raise ValueError(f"GRIN_ICE must be 'none', 'auto' or a JSON list of ICE servers, not {choice!r}")
        if not isinstance(servers, list):
            raise ValueError("GRIN_ICE must be a JSON list of ICE servers")
        return {"iceServers": servers}
    return {} if any(env.get(k) for k in HOSTED_ENV) else {"iceServers": []}
