"""A scheduler address checked before any ``distributed.Client`` is built for it.

A ``Client`` that fails to connect is left half-built, and its ``__del__`` later prints a
traceback of its own; probing first means a bad address gets one clear error and no client
at all. Imported by :mod:`asktell.evaluators._dask_link` only.
"""

from __future__ import annotations

from typing import Any

from asktell.errors import ConfigError, EvaluationError

__all__ = ["probe_scheduler"]


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


_WHAT_TO_DO = (
    "check the address (e.g. 'tcp://10.0.0.5:8786'), that a scheduler runs there (`dask "
    "scheduler`) and that this machine can reach it, or leave 'address' unset to start an "
    "embedded cluster"
)


def probe_scheduler(address: str, security: Any, timeout: float) -> None:
    """Open and close one connection to ``address`` before any ``Client`` exists.

    A malformed address is a :class:`ConfigError`, an unreachable one an
    :class:`EvaluationError`; both name the address and what to do.
    """
    import asyncio
    import threading

    from distributed.comm import connect, parse_address

    try:
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls", "ws", "wss") and ":" not in location.rsplit("]", 1)[-1]:
            raise ValueError("missing port number")
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"DaskEvaluator 'address' must be a scheduler address like "
            f"'tcp://host:8786'; got {address!r} ({describe(exc)}); {_WHAT_TO_DO}"
        ) from None
    try:
        args = {} if security is None else security.get_connection_args("client")
    except (OSError, ValueError) as exc:  # a certificate file that cannot be read or used
        raise ConfigError(
            f"DaskEvaluator TLS: the certificate files could not be used ({describe(exc)}); "
            "check tls_ca_file, tls_cert and tls_key"
        ) from None
    outcome: list[BaseException | None] = [None]

    async def probe() -> None:
        comm = await connect(address, timeout=timeout, **args)
        await comm.close()

    def run() -> None:  # a thread of its own: the caller may already run an event loop
        try:
            asyncio.run(probe())
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome[0] = exc

    thread = threading.Thread(target=run, name="asktell-dask-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    exc = outcome[0]
    if exc is None and thread.is_alive():
        exc = TimeoutError(f"no answer within {timeout:g} s")
    if isinstance(exc, (ValueError, TypeError)):
        raise ConfigError(
            f"DaskEvaluator 'address' {address!r} is not usable: {describe(exc)}; {_WHAT_TO_DO}"
        ) from None
    if exc is not None:
        raise EvaluationError(
            f"DaskEvaluator could not reach the Dask scheduler at {address!r} within "
            f"connect_timeout={timeout:g} s ({describe(exc)}); {_WHAT_TO_DO}"
        ) from None
