"""twostep: directory-native two-step verification for Linux mail and login services.

The package is layered so that what authenticates can stay thin:

* pure core: ``policy``, ``totp``, ``codes``, ``hashing``, ``keyring``, ``records``,
  ``account``, ``lockout``, ``decision``, ``enrollment``, ``management``;
* edges: ``config`` (YAML), ``directory`` (the only ldap3 user), ``audit`` (syslog, files);
* ``engine``: reads, decides, writes and audits; the daemon serves it over a socket.

Importing the package imports none of the heavy dependencies: the thin clients
(checkpassword, the PAM module) import only the standard library.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
