"""The fast path: the packet path's speed tricks, each beside the plain rule it stands for.

The daemon runs these; the plain versions (radtrack/radius/codec.py ``decode``,
radtrack/radius/decoder.py ``AccountingDecoder.request``, radtrack/accounting.py
``Accountant``) are the specification, written to be read, and tests check every trick here
against them on generated packets (tests/test_codec.py, tests/test_accounting.py, which runs
every rule on both, and tests/test_accounting_model.py, which runs both side by side). What is
here and why: a NAS sends packets of the same shape over and over, so ``decode`` learns each
packet Length's layout and cuts a matching packet's values out with one struct format instead
of walking its attributes in Python; ``FastAccountingDecoder.request`` unpacks the kept values
in one step and converts them inline (a helper call per attribute costs more than the
conversion); ``FastAccountant`` finds the session of an Interim-Update (80 % of all packets)
in a direct-mapped table instead of hashing its key, and updates it from the request's fields
unpacked in one step (a NamedTuple's field access is a generic attribute lookup in CPython
3.11); ``intake.BatchReceiver`` reads a batch of datagrams in one recvmmsg(2) call, keeping
the GIL, where transport.py's plain rule reads one by recvfrom (tests/test_intake.py checks
one against the other). bench/hotpath.py and bench/ab.py measure them (docs/performance.md).
"""

from radtrack.fastpath.packets import FastAccountingDecoder, decode
from radtrack.fastpath.sessions import FastAccountant

__all__ = ["FastAccountant", "FastAccountingDecoder", "decode"]
