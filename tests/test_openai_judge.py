"""OpenAIPairJudge against a real HTTP server on loopback that speaks the completions API."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pyarrow as pa
import pytest

from satk8s.errors import ConfigError, Satk8sError
from satk8s.signals.openai_judge import OpenAIPairJudge
from satk8s.signals.pairwise import PairJudge, PairRequest, judge_both_orders, pairwise_scores

KEY = "sk-test-5ecret-key-0123456789"
TEMPLATE = "Q: {question}\nA:{first}\nB:{second}\nBetter: "


@dataclass
class Reply:
    status: int = 200
    body: str | dict = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drip_s: float = 0.0
    """> 0: the whole reply, status line first, is sent one byte per drip_s seconds."""


def logprobs_reply(top: dict[str, float], text: str = " A") -> Reply:
    return Reply(
        body={
            "id": "cmpl-1",
            "object": "text_completion",
            "model": "judge-model",
            "choices": [
                {
                    "index": 0,
                    "text": text,
                    "logprobs": {"tokens": [text], "top_logprobs": [top]},
                    "finish_reason": "length",
                }
            ],
        }
    )


def text_reply(text: str) -> Reply:
    return Reply(body={"choices": [{"index": 0, "text": text, "logprobs": None}]})


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict
    at: float


class FakeOpenAI:
    """Answers each POST with `script(n, body)`: n counts requests from 0."""

    def __init__(self, script: Callable[[int, dict], Reply]) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                with fake._lock:
                    n = len(fake.seen)
                    fake.seen.append(Seen(self.path, dict(self.headers), body, time.monotonic()))
                reply = fake.script(n, body)
                time.sleep(reply.delay_s)
                payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                data = payload.encode()
                if reply.drip_s > 0:
                    head = f"HTTP/1.1 {reply.status} OK\r\nContent-Length: {len(data)}\r\n\r\n"
                    try:
                        for byte in head.encode() + data:
                            self.wfile.write(bytes([byte]))
                            time.sleep(reply.drip_s)
                    except OSError:  # the client gave up and closed the socket
                        pass
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that timed out closes the socket before a slow reply

        self.server = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[int, dict], Reply]], FakeOpenAI]]:
    servers: list[FakeOpenAI] = []

    def start(script: Callable[[int, dict], Reply]) -> FakeOpenAI:
        server = FakeOpenAI(script).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def make_judge(base_url: str, **kwargs: object) -> OpenAIPairJudge:
    # Tests of single verdicts accept any share of invalid ones; the share check has its own.
    settings = dict(
        template=TEMPLATE, timeout_s=2.0, max_retries=2, backoff_s=0.01, max_invalid_share=1.0
    )
    settings.update(kwargs)
    return OpenAIPairJudge(base_url, "judge-model", **settings)  # type: ignore[arg-type]


def request(first: str = " 2+2=4\n#### 4", second: str = " 2+2=5\n#### 4") -> PairRequest:
    return PairRequest("q1", "2+2", 0, 1, first, second)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_logprobs_reply_gives_softmax_over_the_two_labels_and_the_request_is_right(serve):
    server = serve(
        lambda n, body: logprobs_reply({" A": math.log(0.6), " B": math.log(0.2), " C": -3.0})
    )
    judge = make_judge(server.base_url)

    [verdict] = judge.judge([request()])

    assert verdict.method == "logprobs"
    assert verdict.p_first == pytest.approx(0.75)
    assert verdict.label_mass == pytest.approx(0.8)
    [seen] = server.seen
    assert seen.path == "/v1/completions"
    assert seen.body == {
        "model": "judge-model",
        # The template's trailing space is left to the label token (" A") for BPE models.
        "prompt": "Q: 2+2\nA: 2+2=4\n#### 4\nB: 2+2=5\n#### 4\nBetter:",
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": 5,
    }
    assert seen.headers["Authorization"] == f"Bearer {KEY}"


def test_spellings_of_a_label_add_up_and_a_label_outside_the_top_k_counts_as_zero(serve):
    replies = {
        " 1": logprobs_reply({" A": math.log(0.3), "A": math.log(0.3), " B": math.log(0.2)}),
        " 2": logprobs_reply({" B": -0.1, " C": -2.5}, text=" B"),
        " 3": logprobs_reply({" C": -0.1, " D": -2.5}, text=" C"),
    }
    server = serve(lambda n, body: replies[body["prompt"].split("\n")[1][2:]])
    judge = make_judge(server.base_url)

    verdicts = judge.judge([request(first=k) for k in (" 1", " 2", " 3")])

    assert verdicts[0].p_first == pytest.approx(0.75)
    assert (verdicts[1].p_first, verdicts[1].method) == (0.0, "logprobs")
    assert (verdicts[2].p_first, verdicts[2].method) == (None, "invalid")


def test_reply_without_logprobs_is_read_from_its_text(serve):
    texts = {" 1": " B", " 2": "A", " 3": " Both"}
    server = serve(lambda n, body: text_reply(texts[body["prompt"].split("\n")[1][2:]]))
    judge = make_judge(server.base_url)

    verdicts = judge.judge([request(first=k) for k in (" 1", " 2", " 3")])

    assert [(v.p_first, v.method) for v in verdicts] == [
        (0.0, "text"),
        (1.0, "text"),
        (None, "invalid"),
    ]


def test_429_is_retried_after_an_exponential_backoff(serve):
    ok = logprobs_reply({" A": -0.1, " B": -2.4})
    server = serve(lambda n, body: Reply(429, {"error": "slow down"}) if n < 2 else ok)
    judge = make_judge(server.base_url, backoff_s=0.05, max_retries=3)

    [verdict] = judge.judge([request()])

    assert verdict.method == "logprobs"
    assert len(server.seen) == 3
    gaps = [b.at - a.at for a, b in zip(server.seen, server.seen[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.10


def test_retry_after_replaces_the_backoff_and_is_capped(serve):
    ok = logprobs_reply({" A": -0.1, " B": -2.4})
    server = serve(lambda n, body: Reply(503, "busy", {"Retry-After": "3600"}) if n == 0 else ok)
    judge = make_judge(server.base_url, backoff_s=0.0, retry_after_cap_s=0.2)

    [verdict] = judge.judge([request()])

    assert verdict.method == "logprobs"
    gap = server.seen[1].at - server.seen[0].at
    assert 0.2 <= gap < 2.0


def test_500s_on_the_first_request_stop_the_step_with_the_url(serve):
    server = serve(lambda n, body: Reply(500, {"error": "boom"}))
    judge = make_judge(server.base_url, max_retries=2)

    with pytest.raises(Satk8sError, match="HTTP 500") as err:
        judge.judge([request(), request()])

    assert server.base_url in str(err.value)
    assert len(server.seen) == 3  # the probe alone: 1 try + 2 retries, the second pair never sent


def test_500s_after_the_endpoint_has_worked_make_that_pair_invalid(serve):
    ok = logprobs_reply({" A": -0.1, " B": -2.4})
    server = serve(lambda n, body: Reply(500, "boom") if " bad" in body["prompt"] else ok)
    judge = make_judge(server.base_url, max_retries=1)

    verdicts = judge.judge([request(), request(first=" bad"), request()])

    assert [v.method for v in verdicts] == ["logprobs", "invalid", "logprobs"]
    assert sum(" bad" in s.body["prompt"] for s in server.seen) == 2  # 1 try + 1 retry


def test_an_endpoint_that_keeps_failing_stops_the_step(serve):
    ok = logprobs_reply({" A": -0.1, " B": -2.4})
    server = serve(lambda n, body: ok if n == 0 else Reply(502, "gone"))
    judge = make_judge(server.base_url, max_retries=0, max_consecutive_failures=3, concurrency=1)

    with pytest.raises(Satk8sError, match="HTTP 502"):
        judge.judge([request() for _ in range(10)])

    assert len(server.seen) == 4  # the probe, then 3 failures in a row


def test_malformed_replies_are_invalid_and_the_step_continues(serve):
    ok = logprobs_reply({" A": -0.1, " B": -2.4})
    bad = {
        " 1": Reply(body="{not json"),
        " 2": Reply(body={"choices": []}),
        " 3": Reply(body={"choices": [{"logprobs": None}]}),
        " 4": Reply(body="[1, 2]"),
    }
    server = serve(lambda n, body: bad.get(body["prompt"].split("\n")[1][2:], ok))
    judge = make_judge(server.base_url)

    verdicts = judge.judge([request(first=k) for k in (" 1", " 2", " 3", " 4", " 5")])

    assert [v.method for v in verdicts] == ["invalid"] * 4 + ["logprobs"]
    assert len(server.seen) == 5  # malformed replies are answers: never retried


def test_a_reply_slower_than_the_timeout_is_retried(serve):
    ok = logprobs_reply({" A": -2.4, " B": -0.1})
    server = serve(lambda n, body: Reply(body=ok.body, delay_s=1.0 if n == 0 else 0.0))
    judge = make_judge(server.base_url, timeout_s=0.3)

    [verdict] = judge.judge([request()])

    assert verdict.p_first == pytest.approx(1 / (1 + math.exp(2.3)))
    assert len(server.seen) == 2


def test_an_endpoint_that_is_down_raises_an_error_naming_the_url_not_the_key():
    url = closed_port_url()
    judge = make_judge(url, max_retries=1)

    with pytest.raises(Satk8sError) as err:
        judge.judge([request()])

    message = str(err.value)
    assert url in message and "connection failed" in message
    assert KEY not in message


def test_the_key_is_sent_as_bearer_but_never_shown(serve):
    # A server that echoes the key in its 401 text must not leak it into the error.
    server = serve(lambda n, body: Reply(401, {"error": f"Incorrect API key provided: {KEY}"}))
    judge = make_judge(server.base_url)

    with pytest.raises(Satk8sError, match="OPENAI_API_KEY") as err:
        judge.judge([request()])

    assert server.seen[0].headers["Authorization"] == f"Bearer {KEY}"
    assert len(server.seen) == 1  # a refused key is not retried
    assert KEY not in str(err.value)
    assert KEY not in repr(judge) and "OPENAI_API_KEY set" in repr(judge)


def test_no_key_in_the_environment_sends_no_authorization(serve, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    server = serve(lambda n, body: logprobs_reply({" A": -0.1}))
    judge = make_judge(server.base_url)

    judge.judge([request()])

    assert "Authorization" not in server.seen[0].headers


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="base_url"):
        OpenAIPairJudge("localhost:8000", "m")
    with pytest.raises(ConfigError, match="judge.template"):
        OpenAIPairJudge("http://localhost:8000", "m", template="{question} {first} {second} {x}")
    with pytest.raises(ConfigError, match="concurrency"):
        OpenAIPairJudge("http://localhost:8000", "m", concurrency=0)


def test_judges_both_orders_through_the_pairwise_protocol(serve):
    # The judge prefers the shorter solution whichever position it is shown in.
    def by_length(n: int, body: dict) -> Reply:
        first, second = (line[2:] for line in body["prompt"].split("\n")[1:3])
        prefer_first = len(first) < len(second)
        return logprobs_reply(
            {" A": -0.1, " B": -2.4} if prefer_first else {" A": -2.4, " B": -0.1}
        )

    server = serve(by_length)
    judge = make_judge(server.base_url)
    completions = [" 1+1=2 #### 2", " 1+1=2 so #### 2", " 1+1=2 so it is #### 2"]
    kept = pa.table(
        {
            "question_id": ["q"] * 3,
            "sample_index": pa.array([0, 1, 2], pa.int32()),
            "prompt": ["Question: 1+1\nAnswer:"] * 3,
            "completion": completions,
        }
    )
    settings = SimpleNamespace(max_all_pairs_n=8, pair_budget=100, seed=0)

    assert isinstance(judge, PairJudge)
    pairs = judge_both_orders(kept, judge, settings)
    scores = pairwise_scores(pairs, "external_judge").to_pylist()

    assert len(server.seen) == 6  # 3 pairs x 2 orders
    assert set(pairs.column("method").to_pylist()) == {"logprobs"}
    ranked = [r["sample_index"] for r in sorted(scores, key=lambda r: -r["score"])]
    assert ranked == [0, 1, 2]


def test_a_slow_endpoint_is_cut_off_at_the_total_deadline(serve):
    # One byte every 0.2 s: each read is quick, the whole reply would take ~40 s.
    ok = logprobs_reply({" A": -0.1, " B": -2.4})
    server = serve(lambda n, body: Reply(body=ok.body, drip_s=0.2))
    judge = make_judge(server.base_url, timeout_s=0.6, max_retries=1)

    started = time.monotonic()
    with pytest.raises(Satk8sError, match=r"no complete answer within timeout_s=0.6"):
        judge.judge([request()])

    assert time.monotonic() - started < 4.0  # two attempts of 0.6 s, a backoff, not 80 s
    assert len(server.seen) == 2


def test_an_endpoint_answering_200_with_garbage_fails_the_step(serve):
    ok = logprobs_reply({" A": -0.1, " B": -2.4})
    garbage = Reply(body={"choices": [{"text": "<html>rate limited, try later</html>"}]})
    # 2 of 20 verdicts invalid: 10%, over the default 5%.
    server = serve(lambda n, body: garbage if n in (3, 7) else ok)
    judge = make_judge(server.base_url, max_invalid_share=0.05, concurrency=1)

    with pytest.raises(Satk8sError) as err:
        judge.judge([request() for _ in range(20)])

    message = str(err.value)
    assert "2 of 20 verdicts are invalid (10.0%, more than max_invalid_share=5.0%)" in message
    assert "rate limited, try later" in message  # a sample reply says what came back
    # Under the threshold the step goes on, the invalid pairs left out of the fit.
    server = serve(lambda n, body: garbage if n == 3 else ok)
    verdicts = make_judge(server.base_url, max_invalid_share=0.05, concurrency=1).judge(
        [request() for _ in range(20)]
    )
    assert sum(v.method == "invalid" for v in verdicts) == 1


def test_a_password_in_the_base_url_is_never_shown():
    url = closed_port_url().replace("http://", "http://judge-user:Pa55-w0rd-x9@")
    judge = make_judge(url, max_retries=0)

    with pytest.raises(Satk8sError) as err:
        judge.judge([request()])

    assert "Pa55-w0rd-x9" not in str(err.value) and "connection failed" in str(err.value)
    assert "Pa55-w0rd-x9" not in repr(judge)


def test_the_external_judge_config_takes_a_variable_name_not_a_key():
    from satk8s.signals.external_judge import ExternalJudgeConfig

    with pytest.raises(ConfigError, match="api_key_env") as err:
        ExternalJudgeConfig(kind="openai", model="m", base_url="http://h", api_key_env=KEY)
    assert KEY not in str(err.value)
    assert ExternalJudgeConfig().max_invalid_share == 0.05
