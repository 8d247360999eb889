"""A pair judge behind any OpenAI-compatible `/v1/completions` endpoint (OpenAI, vLLM, TGI, ...).

Each pair is one completion request for a single token at temperature 0 with the top 5 logprobs
of that token (the legacy completions API: `choices[0].logprobs.top_logprobs[0]` maps token to
logprob). The verdict is read the same way the local judges read it:

- logprobs: p_first = softmax over the two labels' logprobs. A token counts for a label when it
  equals the label after stripping whitespace, so " A" and "A" both count (their probabilities
  add). A label missing from the top 5 is treated as probability 0 (p_first 1.0 or 0.0): it is
  below the fifth most likely token, and no better estimate exists without its logprob.
  Neither label in the top 5 -> invalid. `label_mass` is the probability on the two labels.
- text: an endpoint that returns no logprobs (`logprobs: null`) gets its generated text read
  instead: the first label found as a standalone word gives p_first 1.0 or 0.0.
- invalid: anything else (malformed JSON, missing fields, no label) is `Verdict(None,
  "invalid")`; the pairwise fit leaves that pair out. When more than `max_invalid_share`
  (default 5%) of all verdicts are invalid, the endpoint is not working as a judge (it answers
  200 with something else): the step fails with the counts and a sample reply instead of
  finishing on neutral scores.

The prompt is `JudgeTemplate.render` of the pair with its trailing space removed
(`strip_trailing_space`): the models behind these APIs use BPE tokenizers, which write the label
as " A", and a prompt that ends in a space makes them predict an unusual token instead.

Failures, and when they stop the step:
- `timeout_s` is the total time of one attempt: connecting, waiting, and reading the whole
  reply. A server that answers slowly (a byte a second) is cut off when it runs out, not kept
  alive by each byte (the socket is shut down by a timer; per-read timeouts alone never fire
  while bytes keep coming).
- 429, 5xx, timeouts and connection errors are retried up to `max_retries` times with
  exponential backoff (`backoff_s * 2**attempt`, a little jitter on top); a `Retry-After` header
  replaces the backoff, capped at `retry_after_cap_s`.
- 401/403 (bad or missing key) and 404 (wrong URL or model) never fix themselves: they raise
  `Satk8sError` at once.
- Until the endpoint has answered once, a request that still fails after its retries raises
  `Satk8sError` naming the URL: the first request of a judge is sent alone for this reason, so an
  endpoint that is down (or misconfigured) stops the step at once instead of turning every pair
  into "invalid".
- After that, a request that still fails after its retries becomes an invalid verdict, unless
  `max_consecutive_failures` requests in a row fail that way: the endpoint has gone away, and
  the step stops with an error rather than finishing on a table of invalid pairs.

The API key is read from the environment variable named by `api_key_env` and is sent only as
`Authorization: Bearer ...`; it is kept out of repr, logs and error messages (server error text
is scrubbed of it too), and so is any password in `base_url`. No key set is allowed: local
vLLM servers usually need none.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from satk8s.errors import ConfigError, Satk8sError
from satk8s.signals.pairwise import DEFAULT_TEMPLATE, JudgeTemplate, PairRequest, Verdict
from satk8s.store.redact import redact_text

log = logging.getLogger(__name__)

INVALID = Verdict(p_first=None, method="invalid")
TOP_LOGPROBS = 5  # the most the legacy completions API returns


class _Halted(Exception):
    """Raised by pairs left unsent once another pair has stopped the step."""


@dataclass(frozen=True)
class _Failure:
    """A request that got no usable HTTP answer after its retries."""

    reason: str


# -- a total deadline per request ----------------------------------------------------------
# requests' timeouts bound each socket operation, so a server that sends a byte just before
# each one expires keeps a request open forever. The connections a request uses are recorded
# (per thread) and a timer shuts their sockets down when the request's time is up.
_in_flight = threading.local()


class _CuttableHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> Any:
        if (connections := getattr(_in_flight, "connections", None)) is not None:
            connections.append(self)
        return super().request(*args, **kwargs)


class _CuttableHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> Any:
        if (connections := getattr(_in_flight, "connections", None)) is not None:
            connections.append(self)
        return super().request(*args, **kwargs)


class _CuttablePool(HTTPConnectionPool):
    ConnectionCls = _CuttableHTTPConnection


class _CuttableTlsPool(HTTPSConnectionPool):
    ConnectionCls = _CuttableHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter, with connections a deadline timer can cut (proxied ones too)."""

    _POOLS = {"http": _CuttablePool, "https": _CuttableTlsPool}

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(self._POOLS)
        return manager


def _cut(connections: list[Any], fired: threading.Event) -> None:
    fired.set()
    for connection in connections:
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # a blocked read returns at once
            except OSError:
                pass


def completions_url(base_url: str) -> str:
    """The completions URL of a base URL: "http://h:8000" and "http://h:8000/v1" both work."""
    base = base_url.rstrip("/")
    if base.endswith("/v1"):
        return base + "/completions"
    return base + "/v1/completions"


def _label_pattern(labels: tuple[str, str]) -> re.Pattern[str]:
    # Longest first, so labels like "1" and "12" do not shadow each other.
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9])({alternatives})(?![A-Za-z0-9])")


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def p_first_from_top_logprobs(
    top: dict[str, Any], labels: tuple[str, str]
) -> tuple[float, float] | None:
    """(P(first label), probability mass on both labels) from one position's top logprobs.

    None when neither label is among them.
    """
    found: dict[str, list[float]] = {labels[0]: [], labels[1]: []}
    for token, value in top.items():
        if not isinstance(token, str) or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)) or math.isnan(value):
            continue
        key = token.strip()
        if key in found:
            # A logprob is <= 0; clamping keeps a malformed reply from overflowing exp().
            found[key].append(min(float(value), 0.0))
    first = _logsumexp(found[labels[0]]) if found[labels[0]] else -math.inf
    second = _logsumexp(found[labels[1]]) if found[labels[1]] else -math.inf
    if first == second == -math.inf:
        return None
    mass = math.exp(first) + math.exp(second)
    # The two-way softmax, written so it never overflows.
    if first >= second:
        return 1.0 / (1.0 + math.exp(second - first)), mass
    ratio = math.exp(first - second)
    return ratio / (1.0 + ratio), mass


def _top_logprobs(choice: dict[str, Any]) -> dict[str, Any] | None:
    """The first position's top-logprobs dict, or None when the reply carries none."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return None
    top = logprobs.get("top_logprobs")
    if not isinstance(top, list) or not top or not isinstance(top[0], dict):
        return None
    return top[0]


def parse_completion(body: str, labels: tuple[str, str]) -> Verdict:
    """The verdict in a completions reply body; never raises (bad replies are INVALID)."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return INVALID
    if not isinstance(choice, dict):
        return INVALID
    top = _top_logprobs(choice)
    if top is not None:
        read = p_first_from_top_logprobs(top, labels)
        if read is None:
            return INVALID
        return Verdict(p_first=read[0], method="logprobs", label_mass=min(read[1], 1.0))
    text = choice.get("text")
    if not isinstance(text, str):
        return INVALID
    match = _label_pattern(labels).search(text)
    if match is None:
        return INVALID
    return Verdict(p_first=1.0 if match.group(1) == labels[0] else 0.0, method="text")


def _retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), None if absent/bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class OpenAIPairJudge:
    """A `PairJudge` that asks an OpenAI-compatible completions endpoint, `concurrency` at a time."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        template: str = DEFAULT_TEMPLATE,
        labels: tuple[str, str] = ("A", "B"),
        timeout_s: float = 30.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        concurrency: int = 4,
        retry_after_cap_s: float = 30.0,
        max_consecutive_failures: int = 16,
        strip_trailing_space: bool = True,
        max_invalid_share: float = 0.05,
    ) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigError("base_url", f"must be an http(s) URL, got {base_url!r}")
        # JudgeTemplate checks the fields and labels, the same way for every judge.
        self.prompt = JudgeTemplate(template=template, labels=tuple(labels))
        try:
            self.prompt.render(PairRequest("q", "", 0, 1, "", ""))
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(
                "judge.template",
                "must be a str.format template whose only fields are {question}, {first} and "
                f"{{second}} (literal braces doubled): {type(err).__name__}: {err}",
            ) from None
        if timeout_s <= 0:
            raise ConfigError("timeout_s", f"must be > 0, got {timeout_s}")
        if backoff_s < 0:
            raise ConfigError("backoff_s", f"must be >= 0, got {backoff_s}")
        if retry_after_cap_s < 0:
            raise ConfigError("retry_after_cap_s", f"must be >= 0, got {retry_after_cap_s}")
        if max_retries < 0:
            raise ConfigError("max_retries", f"must be >= 0, got {max_retries}")
        if concurrency < 1:
            raise ConfigError("concurrency", f"must be >= 1, got {concurrency}")
        if max_consecutive_failures < 1:
            raise ConfigError(
                "max_consecutive_failures", f"must be >= 1, got {max_consecutive_failures}"
            )
        if not 0.0 <= max_invalid_share <= 1.0:
            raise ConfigError("max_invalid_share", f"must be in [0, 1], got {max_invalid_share}")
        self.name = f"openai:{model}"
        self.base_url = base_url
        self.url = completions_url(base_url)
        self.shown_url = redact_text(self.url)  # a password in the URL is never printed
        self.max_invalid_share = max_invalid_share
        self._invalid_sample: str | None = None
        self.model = model
        self.labels = self.prompt.labels
        self.strip_trailing_space = strip_trailing_space
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.concurrency = concurrency
        self.retry_after_cap_s = retry_after_cap_s
        self.max_consecutive_failures = max_consecutive_failures
        self._api_key = os.environ.get(api_key_env) or None
        self._endpoint_ok = False  # set by the first 2xx answer
        self._lock = threading.Lock()
        self._consecutive_failures = 0
        self._local = threading.local()

    def __repr__(self) -> str:
        key = f"${self.api_key_env} set" if self._api_key else f"${self.api_key_env} unset"
        return f"OpenAIPairJudge(url={self.shown_url!r}, model={self.model!r}, key: {key})"

    # -- one request ---------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return redact_text(text)

    def _session(self) -> requests.Session:
        # One session per worker thread: connections are reused, sessions are not shared.
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            adapter = _DeadlineAdapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        return session

    def _send(self, body: dict[str, Any], headers: dict[str, str]) -> requests.Response:
        """One attempt, cut off when `timeout_s` is over (connect, wait and body together)."""
        connections: list[Any] = []
        fired = threading.Event()
        timer = threading.Timer(self.timeout_s, _cut, args=(connections, fired))
        _in_flight.connections = connections
        timer.start()
        try:
            return self._session().post(
                self.url, json=body, headers=headers, timeout=self.timeout_s
            )
        except requests.RequestException:
            if fired.is_set():
                raise requests.Timeout() from None
            raise
        finally:
            timer.cancel()
            _in_flight.connections = None

    def _delay_s(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap_s)
        # Jitter only lengthens the wait, so concurrent retries spread out.
        return self.backoff_s * 2**attempt * (1.0 + 0.25 * random.random())

    def _post(self, prompt: str) -> str | _Failure:
        """The reply body of one completion request, or why there is none after the retries."""
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": TOP_LOGPROBS,
        }
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        reason = "no attempt made"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                reply = self._send(body, headers)
            except requests.Timeout:
                reason = f"no complete answer within timeout_s={self.timeout_s}"
            except requests.RequestException as err:
                reason = f"connection failed ({type(err).__name__})"
            else:
                status = reply.status_code
                if 200 <= status < 300:
                    return reply.text
                snippet = self._scrub(reply.text[:200])
                if status in (401, 403):
                    raise Satk8sError(
                        f"{self.shown_url} refused the request (HTTP {status}: {snippet}); check the "
                        f"API key in ${self.api_key_env}"
                    )
                if status == 404:
                    raise Satk8sError(
                        f"{self.shown_url} answered HTTP 404 ({snippet}); check base_url and that the "
                        f"server serves model {self.model!r} on the completions API"
                    )
                reason = f"HTTP {status}: {snippet}"
                if status != 429 and status < 500:
                    return _Failure(reason)  # a bad request: sending it again will not help
                retry_after = _retry_after_s(reply.headers.get("Retry-After"))
            if attempt < self.max_retries:
                delay = self._delay_s(attempt, retry_after)
                log.debug("retrying %s in %.2fs (%s)", self.shown_url, delay, reason)
                time.sleep(delay)
        return _Failure(f"{reason}, after {self.max_retries + 1} attempts")

    def _judge_one(self, request: PairRequest, halt: threading.Event) -> Verdict:
        if halt.is_set():  # another pair has already stopped the step: send nothing more
            raise _Halted()
        prompt = self.prompt.render(request)
        if self.strip_trailing_space and prompt.endswith(" "):
            prompt = prompt[:-1]
        outcome = self._post(prompt)
        if isinstance(outcome, _Failure):
            with self._lock:
                self._consecutive_failures += 1
                stop = not self._endpoint_ok or (
                    self._consecutive_failures >= self.max_consecutive_failures
                )
            if stop:
                halt.set()
                raise Satk8sError(
                    f"the OpenAI-compatible endpoint {self.shown_url} failed: {outcome.reason}; "
                    "check that the server is running and that base_url and model are right"
                )
            log.warning(
                "pair %s (%d, %d) judged invalid: %s",
                request.question_id,
                request.first_index,
                request.second_index,
                outcome.reason,
            )
            self._note_invalid(outcome.reason)
            return INVALID
        with self._lock:
            self._endpoint_ok = True
            self._consecutive_failures = 0
        verdict = parse_completion(outcome, self.labels)
        if verdict.method == "invalid":
            self._note_invalid(outcome)
        return verdict

    def _note_invalid(self, reply: str) -> None:
        with self._lock:
            if self._invalid_sample is None:
                self._invalid_sample = self._scrub(reply[:300])

    # -- the PairJudge interface ---------------------------------------------------------

    def judge(self, requests: Sequence[PairRequest]) -> list[Verdict]:
        """One verdict per request, in order. Raises `Satk8sError` per the rules above."""
        verdicts: list[Verdict | None] = [None] * len(requests)
        halt = threading.Event()
        start = 0
        if requests and not self._endpoint_ok:
            # The probe: the first request alone, so a dead endpoint fails once, not per pair.
            verdicts[0] = self._judge_one(requests[0], halt)
            start = 1
        if start < len(requests):
            pool = ThreadPoolExecutor(max_workers=self.concurrency)
            try:
                futures = {
                    pool.submit(self._judge_one, requests[i], halt): i
                    for i in range(start, len(requests))
                }
                for future in as_completed(futures):
                    try:
                        verdicts[futures[future]] = future.result()  # re-raises a worker's error
                    except _Halted:
                        continue  # the pair that set `halt` raises its own, clearer error
            except BaseException:
                halt.set()
                raise
            finally:
                # On an error, pairs not yet started are dropped instead of sent.
                pool.shutdown(wait=True, cancel_futures=True)
        done = [v for v in verdicts if v is not None]
        assert len(done) == len(requests)
        invalid = sum(v.method == "invalid" for v in done)
        if invalid:
            log.warning("%s: %d of %d verdicts invalid", self.name, invalid, len(done))
        if done and invalid / len(done) > self.max_invalid_share:
            raise Satk8sError(
                f"judge {self.name} at {self.shown_url}: {invalid} of {len(done)} verdicts are "
                f"invalid ({invalid / len(done):.1%}, more than max_invalid_share="
                f"{self.max_invalid_share:.1%}); a sample reply: {self._invalid_sample!r}. The "
                "endpoint answers, but not as a judge: check that it serves a completions model "
                f"with logprobs and that its answers start with the labels {list(self.labels)}"
            )
        return done
