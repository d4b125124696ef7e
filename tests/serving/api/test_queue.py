"""Deadlines and the bounded queue over real HTTP on loopback (uvicorn, the in-process engine
behind `LocalRenderer`): the same queue a Ray generator replica keeps (`serving.scheduler`)."""

from __future__ import annotations

import threading
import time

import requests

# 8 images of 150 steps: seconds of drawing on the tiny base, and within the default cost limit.
LONG = {"brand": "acme", "prompt": "acme banner", "n": 8, "width": 32, "height": 32, "steps": 150}
SMALL = {"brand": "acme", "prompt": "acme banner", "n": 1, "width": 32, "height": 32, "steps": 2}


def _wait_for(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_deadlines_and_the_queue_bound_answer_504_and_503_and_free_the_engine(loopback):
    url, auth = f"{loopback.url}/v1/generate", loopback.auth("app")
    queue = loopback.services.renderer.scheduler
    before = queue.stats()

    r = requests.post(url, json=SMALL, headers={**auth, "X-Request-Deadline-Ms": "10"}, timeout=30)
    assert r.status_code == 422 and "X-Request-Deadline-Ms" in r.text and "1000" in r.text

    answers: dict[str, requests.Response] = {}

    def send(name: str, deadline_ms: int) -> None:
        headers = {**auth, "X-Request-Deadline-Ms": str(deadline_ms)}
        answers[name] = requests.post(url, json=LONG, headers=headers, timeout=60)

    drawing = threading.Thread(target=send, args=("drawing", 1000))
    drawing.start()
    _wait_for(lambda: queue.stats()["drawing_live"] == 8, "the first batch to start")
    waiting = threading.Thread(target=send, args=("waiting", 2000))
    waiting.start()
    _wait_for(lambda: queue.stats()["waiting"] == 8, "the second request to queue")

    full = requests.post(url, json=SMALL, headers=auth, timeout=30)
    assert full.status_code == 503, full.text
    assert "at most 8 waiting" in full.json()["detail"]
    assert int(full.headers["Retry-After"]) >= 1

    drawing.join(30)
    waiting.join(30)
    assert answers["drawing"].status_code == 504
    assert "deadline of 1000 ms" in answers["drawing"].json()["detail"]
    assert answers["waiting"].status_code == 504
    after = queue.stats()
    assert after["interrupted"] > before["interrupted"]  # stopped at a step, not drawn out
    assert after["drawn"] == before["drawn"]  # nothing of the two long requests was drawn
    ok = requests.post(url, json=SMALL, headers=auth, timeout=30)
    assert ok.status_code == 200, ok.text
