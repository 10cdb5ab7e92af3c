"""Process-level limits of a replica."""

from __future__ import annotations

import resource


def limit_memory(megabytes: int) -> None:
    """Cap the memory this process writes to: heap, anonymous mappings, stacks (the manifest's memory limit).

    ``RLIMIT_DATA``, not ``RLIMIT_AS``: the address space also holds what is
    reserved and never used — glibc reserves 64 MiB for each thread's malloc
    arena — so an address-space cap refused new threads (gevent's resolver
    starts some) long before the process used its memory.
    """
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
