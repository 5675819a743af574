"""The service's limits without a server: admission gate, limit checks, header encoding."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import unquote

import pytest

from cxrkit.errors import UsageError
from cxrkit.serve.limits import Gate, Limits, Overloaded, release_memory
from cxrkit.serve.responses import header_value


def test_limits_must_be_positive():
    for field in ("busy", "max_pixels", "queue_wait_s", "body_timeout_s"):
        with pytest.raises(UsageError, match=field):
            Limits(**{field: 0})
    with pytest.raises(UsageError, match="work_side"):
        Limits(work_side=float("nan"))


def test_gate_waits_then_refuses_and_frees_its_slot():
    async def scenario():
        gate = Gate(Limits(busy=1, queue=1, queue_wait_s=0.2))
        async with gate.slot():
            start = time.monotonic()
            with pytest.raises(Overloaded) as refused:
                async with gate.slot():
                    pass
            assert 0.15 < time.monotonic() - start < 2 and refused.value.status == 503
            assert int(refused.value.headers["Retry-After"]) >= 1

            waiter = asyncio.ensure_future(_hold(gate))  # takes the one queue place
            await asyncio.sleep(0.05)
            start = time.monotonic()
            with pytest.raises(Overloaded, match="queue is full"):
                async with gate.slot():
                    pass
            assert time.monotonic() - start < 0.1  # refused at once, no wait
        await waiter  # the slot was released: the waiter got it
        assert gate.running == 0 and gate.waiting == 0

    asyncio.run(scenario())


async def _hold(gate: Gate) -> None:
    async with gate.slot():
        await asyncio.sleep(0.01)


def test_header_values_are_ascii_and_round_trip():
    for name in ("viral_pneumonia", "normal", "ковид", "病毒性肺炎", "a b/c\r\nX-Evil: 1"):
        value = header_value(name)
        assert value.isascii() and "\r" not in value and "\n" not in value
        assert unquote(value) == name
    assert header_value("viral_pneumonia") == "viral_pneumonia"


def test_release_memory_finds_the_allocator():
    assert release_memory() in {"tcmalloc", "malloc_trim"}  # Linux: glibc or a preloaded tcmalloc
