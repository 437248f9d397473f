"""``AsyncTwoStep``: every operation of ``TwoStep`` as a coroutine that never blocks the loop."""

from __future__ import annotations

import asyncio
import inspect
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from unittest import mock

import pytest

import twostep as ts
from twostep._settings import PASSWORD_DEFAULT
from twostep.testing import FAST, ManualClock, Phone

PASSWORD = "correct horse battery"
PARALLEL_LOGINS = 8


def public_operations(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_every_operation_of_twostep_is_a_coroutine_with_the_same_signature() -> None:
    sync, concurrent = public_operations(ts.TwoStep), public_operations(ts.AsyncTwoStep)
    assert set(sync) == set(concurrent)
    for name, signature in sync.items():
        assert inspect.iscoroutinefunction(getattr(ts.AsyncTwoStep, name)), name
        assert str(concurrent[name]) == str(signature), name


def test_only_a_twostep_can_be_wrapped() -> None:
    with pytest.raises(TypeError, match="wraps a TwoStep"):
        ts.AsyncTwoStep("not a service")  # type: ignore[arg-type]


def test_the_async_face_gives_the_results_and_errors_of_the_service(
    service: ts.TwoStep, clock: ManualClock
) -> None:
    async def story() -> None:
        twostep = ts.AsyncTwoStep(service)
        assert twostep.sync is service
        assert twostep.issuer == service.issuer
        assert "AsyncTwoStep(TwoStep(" in repr(twostep)
        account = await twostep.create_account("Acme")
        await twostep.create_user(account.id, "ann@acme.example", PASSWORD, ts.Role.OWNER)
        step = await twostep.login("ann@acme.example", PASSWORD)
        assert isinstance(step, ts.LoggedIn)
        session = await twostep.check_session(step.session.token)
        enrollment = await twostep.begin_enrollment(session)
        phone = Phone(enrollment.secret, clock)
        codes = await twostep.confirm_enrollment(session, phone.code())
        assert len(list(codes)) == 10
        with pytest.raises(ts.InvalidCredentials):  # the typed error comes through
            await twostep.login("ann@acme.example", "wrong password!")
        code_step = await twostep.login("ann@acme.example", PASSWORD)
        assert isinstance(code_step, ts.CodeRequired)
        clock.advance(30)
        done = await twostep.complete_login(code_step, phone.code())
        assert (await twostep.two_factor_status(done.session)).enabled
        await twostep.logout(done.session)
        with pytest.raises(ts.SessionInvalid):
            await twostep.check_session(done.session.token)

    asyncio.run(story())


def test_a_bounded_executor_runs_the_calls(service: ts.TwoStep) -> None:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="twostep-test") as executor:
        seen: list[str] = []
        original = service.create_account

        def spy(name: str) -> ts.Account:
            import threading

            seen.append(threading.current_thread().name)
            return original(name)

        service.create_account = spy  # type: ignore[method-assign]
        asyncio.run(ts.AsyncTwoStep(service, executor=executor).create_account("Acme"))
    assert len(seen) == 1
    assert seen[0].startswith("twostep-test")


@pytest.mark.parametrize("name", sorted(public_operations(ts.TwoStep)))
def test_each_coroutine_passes_its_arguments_and_result_through(name: str) -> None:
    service = mock.create_autospec(ts.TwoStep, instance=True)
    args: list[object] = []
    kwargs: dict[str, object] = {}
    for parameter in list(inspect.signature(getattr(ts.TwoStep, name)).parameters.values())[1:]:
        value = object()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[parameter.name] = value
        else:
            args.append(value)
    result = asyncio.run(getattr(ts.AsyncTwoStep(service), name)(*args, **kwargs))
    getattr(service, name).assert_called_once_with(*args, **kwargs)
    assert result is getattr(service, name).return_value


# -- the event loop goes on during Argon2 --------------------------------------------------


async def worst_gap_while(work: asyncio.Future[object]) -> float:
    """The longest the loop went without running a ticking coroutine, until ``work`` ends."""
    worst, last = 0.0, time.perf_counter()
    while not work.done():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        worst, last = max(worst, now - last), now
    await work
    return worst


@pytest.mark.slow
def test_parallel_logins_leave_the_event_loop_free(tmp_path: Path) -> None:
    # R115
    # The real Argon2 cost of passwords (PASSWORD_DEFAULT), so that one hash is long
    # next to the loop's ticks; SQLite, used from the worker threads.
    settings = replace(FAST, password_hash=PASSWORD_DEFAULT)
    store = ts.SQLiteStore(tmp_path / "twostep.db")
    service = ts.TwoStep(
        store, issuer="Async", settings=settings, cipher=ts.AESGCMKeyring.generate()
    )
    account = service.create_account("Acme")
    emails = [f"user{i}@acme.example" for i in range(PARALLEL_LOGINS)]

    # As docs/api.md advises: as many hashes at once as the cores run, with the
    # ``parallelism`` threads each hash takes; more would only queue for the cores.
    workers = max(1, (os.cpu_count() or 1) // PASSWORD_DEFAULT.parallelism)
    executor = ThreadPoolExecutor(max_workers=workers)

    async def run() -> tuple[float, float, float, list[ts.LoginStep]]:
        twostep = ts.AsyncTwoStep(service, executor=executor)
        await asyncio.gather(*(twostep.create_user(account.id, e, PASSWORD) for e in emails))
        durations = []
        for _ in range(3):  # one login, one Argon2 hash, measured here: the median of 3
            started = time.perf_counter()
            service.login(emails[0], PASSWORD)
            durations.append(time.perf_counter() - started)
        one_hash = statistics.median(durations)

        # The control: the same login called straight from a coroutine blocks the loop.
        async def blocking() -> object:
            await asyncio.sleep(0.005)
            return service.login(emails[0], PASSWORD)

        blocked = await worst_gap_while(asyncio.ensure_future(blocking()))

        logins = asyncio.gather(*(twostep.login(e, PASSWORD) for e in emails))
        worst = await worst_gap_while(logins)
        return one_hash, blocked, worst, await logins

    one_hash, blocked, worst, steps = asyncio.run(run())
    executor.shutdown()
    store.close()
    print(  # noqa: T201 (the figures, with pytest -s)
        f"one hash {one_hash * 1000:.0f} ms; loop blocked {blocked * 1000:.0f} ms by a sync "
        f"login; worst gap during {PARALLEL_LOGINS} async logins {worst * 1000:.1f} ms "
        f"({worst / one_hash:.2f} of a hash)"
    )
    assert all(isinstance(step, ts.LoggedIn) for step in steps)
    assert blocked > 0.5 * one_hash  # the ticks do see a blocked loop
    assert worst < 0.25 * one_hash  # a small fraction of one hash
