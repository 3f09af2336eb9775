"""The load test's arithmetic: each session's rate over its own samples."""
from bench.load_test import Sample, summarize


def test_each_sessions_rate_is_over_its_own_samples(tmp_path):
    """Pages are read in turn, so their sample times are staggered: a session read first must not be
    charged the time before the others' first reads or after its own last one."""
    def session(offset: float, n: int = 16) -> list[Sample]:
        return [Sample(100 + offset + 2 * i, 30 * i, 15.0, 20.0, 60.0) for i in range(n)]

    samples = [session(0.0), session(0.5), session(1.0), session(1.5)]
    log = tmp_path / "webcam.jsonl"
    log.write_text("".join(f'{{"t": {100 + i / 60}, "stream": {1 + i % 4}, "ms": {200 if i % 40 == 0 else 10 + i % 4}}}\n'
                           for i in range(60 * 30)) + "not json\n")
    out = summarize(samples, [[] for _ in samples], log)
    assert [s["processed_fps"] for s in out["sessions"]] == [15.0] * 4
    assert [s["seconds"] for s in out["sessions"]] == [30.0] * 4
    assert out["server_logged_fps_all_sessions"] > 50
    streams = out["server_log_per_stream"]
    assert [s["stream"] for s in streams] == [1, 2, 3, 4] and all(s["frames"] == 450 for s in streams)
    assert [s["latency_median_ms"] for s in streams] == [10, 11, 12, 13]
    assert streams[0]["latency_p95_ms"] == 200 and streams[1]["latency_p95_ms"] == 11   # stream 1 has the slow 1 in 10
