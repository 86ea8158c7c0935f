"""The one exception tree: every error class of the package is in it, and retryable,
indeterminate and committed are distinct properties of its classes."""

from __future__ import annotations

import importlib
import inspect

import pytest

from litecluster import errors
from litecluster.errors import LiteclusterError
from support.errortree import error_tree, package_modules


def _package_exceptions() -> list[type[BaseException]]:
    """Every exception class defined in a module of the package."""
    found: dict[str, type[BaseException]] = {}
    for name in package_modules():
        for _, obj in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("litecluster"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_every_error_class_of_the_package_is_in_theerror_tree() -> None:
    classes = _package_exceptions()
    assert len(classes) > 40, "the walk found the package's classes"
    outside = [c.__qualname__ for c in classes if not issubclass(c, LiteclusterError)]
    assert outside == []
    import litecluster.dbapi as dbapi

    assert issubclass(dbapi.Error, LiteclusterError), "PEP 249's root is in the tree too"
    assert issubclass(dbapi.Error, Exception)


def test_one_name_one_meaning() -> None:
    by_name: dict[str, set[str]] = {}
    for cls in error_tree():
        by_name.setdefault(cls.__name__, set()).add(cls.__module__)
    shared = {name: sorted(mods) for name, mods in by_name.items() if len(mods) > 1}
    assert shared == {}


@pytest.mark.parametrize("cls", error_tree(), ids=lambda c: c.__qualname__)
def test_an_indeterminate_error_is_never_retryable(cls: type[LiteclusterError]) -> None:
    assert not (cls.indeterminate and cls.retryable)
    assert cls.retryable + cls.indeterminate + cls.committed <= 1
    err = cls("the message")
    assert not (err.indeterminate and err.retryable)
    assert err.retryable + err.indeterminate + err.committed <= 1


def test_a_class_with_two_of_the_properties_cannot_be_defined() -> None:
    with pytest.raises(TypeError, match="exclude each other"):

        class Both(errors.NotPrimaryError):
            indeterminate = True

    with pytest.raises(TypeError, match="exclude each other"):

        class CommittedAndUnknown(errors.IndeterminateWriteError):
            committed = True


def test_the_properties_of_the_errors_front_doors_answer() -> None:
    from litecluster.ha.etcd import EtcdError, EtcdUnavailableError

    def props(cls: type[LiteclusterError]) -> tuple[bool, bool, bool]:
        return cls.retryable, cls.indeterminate, cls.committed

    retryable, indeterminate, committed, none = (
        (True, False, False), (False, True, False), (False, False, True), (False, False, False)
    )  # fmt: skip
    for cls in (errors.NotPrimaryError, errors.UnavailableError, errors.StaleReadError,
                errors.WriteError, EtcdUnavailableError):  # fmt: skip
        assert props(cls) == retryable, cls
    for cls in (errors.IndeterminateWriteError, errors.SyncTimeoutError,
                errors.LeadershipLostError):  # fmt: skip
        assert props(cls) == indeterminate, cls
    assert props(errors.CommittedNotVisibleError) == committed
    for cls in (errors.RequestError, errors.KvRequestError, errors.AtomicAbortedError,
                errors.ConfigError, errors.TxlogCorruptError, EtcdError):  # fmt: skip
        assert props(cls) == none, cls


def test_a_lease_lost_while_committing_is_indeterminate_not_a_retryable_not_primary() -> None:
    lost = errors.LeadershipLostError("leadership was lost while the write committed")
    assert not isinstance(lost, errors.NotPrimaryError)
    assert errors.is_indeterminate(lost)
    assert not lost.retryable
    assert "may or may not have been applied" in lost.hint


def test_client_errors_keep_the_properties_exclusive_per_instance() -> None:
    from litecluster.client.errors import ClientError, KvError

    both = ClientError("x", retryable=True, indeterminate=True, committed=True)
    assert (both.retryable, both.indeterminate, both.committed) == (False, True, False)
    done = KvError("x", retryable=True, committed=True)
    assert (done.retryable, done.indeterminate, done.committed) == (False, False, True)
    assert ClientError("x", retryable=True).retryable
