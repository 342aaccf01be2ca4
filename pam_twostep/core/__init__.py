"""The pure core: state + what was presented + context + ``now`` -> outcome + changes.

Nothing here does I/O, reads a clock or draws randomness: the directory, the time and
the random source are passed in by the layers above (``engine``, ``handlers``,
``daemon``), which apply the changes the core returns. ``tests/test_layers.py`` fails if
a module here imports anything that could reach a file, a socket, a process or the
directory.

Layers, each importing only those below it::

    clients     pam_module, checkpassword, portal, Lua passdb  (wire only)
    edge        daemon, handlers, cli, check, lab, migrate, stalenotice, background
    services    engine (logins, accounts, policies, keys, imports)
    adapters    directory (ldap3), audit, config, keyfiles, secretfile, throttle
    core        account, changes, codes, decision, duration, enrollment, errors,
                hashing, keyring, lockout, management, policy, records, rotation,
                stale_records, staleclients, totp
"""

__all__: list[str] = []
"""The modules are the interface: ``from pam_twostep.core.decision import decide``."""
