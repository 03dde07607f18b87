"""One TLS context per setting for the whole test process.

Tests talk to apps served on localhost over plain HTTP, yet every `httpx` client (gradio_client makes one for many of
its calls, the tests' own `httpx.get` one per call) builds a TLS context from the CA bundle first: about 40 ms each,
some 20 s of the quick pass. The context is made once per (verify, cert, trust_env) and shared; a context object given
as `verify` is used as it is. Nothing in the tests opens a TLS connection.
"""

import functools

import httpx._config
import httpx._transports.default

_make = httpx._config.create_ssl_context


@functools.lru_cache(maxsize=8)
def _shared(verify, cert, trust_env):
    return _make(verify=verify, cert=cert, trust_env=trust_env)


def create_ssl_context(verify=True, cert=None, trust_env=True):
    try:
        return _shared(verify, cert, trust_env)
    except TypeError:  # not hashable: made as asked
        return _make(verify=verify, cert=cert, trust_env=trust_env)


def install() -> None:
    httpx._config.create_ssl_context = create_ssl_context
    httpx._transports.default.create_ssl_context = create_ssl_context
