"""ICE servers for the webcam: none locally, streamlit-webrtc's own choice on a hosted Space."""
import pytest

from core.rtc import rtc_configuration


def test_local_runs_use_no_ice_servers():
    assert rtc_configuration({}) == {"iceServers": []}
    assert rtc_configuration({"GRIN_ICE": "none", "SPACE_ID": "me/grin"}) == {"iceServers": []}


def test_hosted_runs_let_streamlit_webrtc_find_turn_servers():
    # no "iceServers" key: streamlit-webrtc reads Cloudflare / Twilio / HF credentials itself
    assert rtc_configuration({"SPACE_ID": "me/grin", "HF_TOKEN": "x"}) == {}
    assert rtc_configuration({"CLOUDFLARE_TURN_KEY_ID": "id"}) == {}
    assert rtc_configuration({"GRIN_ICE": "auto"}) == {}


def test_explicit_servers_and_bad_values():
    servers = '[{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "c"}]'
    assert rtc_configuration({"GRIN_ICE": servers})["iceServers"][0]["urls"] == "turn:turn.example.org:3478"
    with pytest.raises(ValueError, match="GRIN_ICE"):
        rtc_configuration({"GRIN_ICE": "stun.example.org"})
    with pytest.raises(ValueError, match="list"):
        rtc_configuration({"GRIN_ICE": '{"urls": "stun:x"}'})
