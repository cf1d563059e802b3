import asyncio
import gc

import pytest

import taskleak


@pytest.fixture
def tracked():
    """taskleak installed for one test, with loss events cleared before and after."""
    taskleak.install()
    taskleak.clear_loss_events()
    yield taskleak
    gc.collect()
    taskleak.clear_loss_events()


def run(coro_fn, *args):
    return asyncio.run(coro_fn(*args))
