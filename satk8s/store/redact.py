"""Keep credentials out of logs, manifests and error messages.

Secret values are taken from the environment (any variable whose name looks like a secret) and
from the S3 settings in use; every occurrence is replaced by `***`. Config keys that name a
secret (`api_key`, `password`, ...) have their values replaced in manifests.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
_SECRET_NAME = re.compile(
    r"(^|_)(api_?key|access_?key(_id)?|secret(_access)?(_key)?|password|passwd|token|"
    r"session_token|auth_token|credentials?)$",
    re.IGNORECASE,
)
# user:password@ in URLs (an endpoint or a proxy may carry credentials).
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
_MIN_SECRET_LEN = 6  # shorter values would mask ordinary words
_extra_secrets: set[str] = set()


def is_secret_name(name: str) -> bool:
    """Whether a config key or environment variable name denotes a credential."""
    return bool(_SECRET_NAME.search(name))


def register_secrets(values: Iterable[str | None]) -> None:
    """Add values (e.g. credentials given in config, not the environment) to mask everywhere."""
    _extra_secrets.update(v for v in values if v and len(v) >= _MIN_SECRET_LEN)


def known_secrets() -> list[str]:
    """Every value to mask, longest first (so a secret containing another is masked whole)."""
    from_env = {v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= _MIN_SECRET_LEN}
    return sorted(from_env | _extra_secrets, key=len, reverse=True)


def redact_text(text: str) -> str:
    """`text` with every known secret and every URL password replaced by `***`."""
    for secret in known_secrets():
        text = text.replace(secret, MASK)
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def redact_obj(value: Any) -> Any:
    """A JSON-like value with secret-named keys masked and secrets in strings replaced."""
    if isinstance(value, dict):
        return {
            k: MASK if is_secret_name(str(k)) and v else redact_obj(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_obj(v) for v in value]
    return redact_text(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's final message (botocore's debug logs print request headers,
    session tokens included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:  # a traceback may quote a URL or a header
            record.exc_text = redact_text(_FORMATTER.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


_FORMATTER = logging.Formatter()


_FILTER = RedactingFilter()
_LIBRARY_LOGGERS = (
    "satk8s", "boto3", "botocore", "s3transfer", "urllib3", "requests", "huggingface_hub",
)  # fmt: skip


def _redacting_factory(make: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        _FILTER.filter(record)
        return record

    factory.satk8s_redacting = True  # type: ignore[attr-defined]
    return factory


def install_log_redaction() -> None:
    """Mask secrets in every log record: the record factory masks each record as it is made
    (on any logger, created before or after this call), and the filter stays on the
    library loggers for records made by a factory someone installed after ours."""
    if not getattr(logging.getLogRecordFactory(), "satk8s_redacting", False):
        logging.setLogRecordFactory(_redacting_factory(logging.getLogRecordFactory()))
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in _LIBRARY_LOGGERS]
    for name in {*names, *_LIBRARY_LOGGERS}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


# user:password@ in a URL: a credential (a bare user@ is not).
_URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@", re.IGNORECASE)
_USE_INSTEAD = (
    "Pass credentials through an environment variable (e.g. the judge's api_key_env, the "
    "store's AWS_* variables) or a Kubernetes Secret (a compute profile's `secrets`), never "
    "as a setting: settings are written into the pipeline and onto command lines."
)


def credentials_in(value: Any, prefix: str = "") -> list[str]:
    """Dotted fields of a settings value that hold credentials: a secret-named key with a value,
    a URL with a password, or the value of a secret environment variable."""
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            path = f"{prefix}{key}"
            if is_secret_name(str(key)) and item not in (None, "", [], {}):
                found.append(f"{path} (a secret-named setting)")
            else:
                found += credentials_in(item, f"{path}.")
        return found
    if isinstance(value, list | tuple):
        return [f for i, item in enumerate(value) for f in credentials_in(item, f"{prefix}{i}.")]
    if not isinstance(value, str):
        return []
    path = prefix.rstrip(".") or "value"
    if _URL_PASSWORD.search(value):
        return [f"{path} (a password in a URL)"]
    if any(secret in value for secret in known_secrets()):
        return [f"{path} (the value of a secret environment variable)"]
    return []


def refuse_credentials(where: str, value: Any) -> None:
    """Raise a ConfigError naming the fields of `value` that hold credentials (never their
    values) and what to use instead."""
    from satk8s.errors import ConfigError

    if found := credentials_in(value):
        raise ConfigError(where, f"holds credentials: {', '.join(found)}. {_USE_INSTEAD}")


def check_pipeline_secrets(node_configs: dict[str, Any], text: str) -> None:
    """Refuse a compiled pipeline that would carry a credential: any node config holding one,
    or its YAML text holding a secret environment variable's value."""
    from satk8s.errors import ConfigError

    for node, config in node_configs.items():
        refuse_credentials(f"plan node '{node}'", config)
    if any(secret in text for secret in known_secrets()) or _URL_PASSWORD.search(text):
        raise ConfigError(
            "pipeline", f"the compiled pipeline would hold a credential. {_USE_INSTEAD}"
        )
