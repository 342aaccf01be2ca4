"""The self-service web portal: the user guide's "Account Security" page, over twostepd.

Server-rendered HTML (Flask, Jinja2 with autoescaping) served by waitress; every read
and every change is a request to twostepd, so the portal holds no LDAP connection, no
key and no state of its own beyond a signed session cookie. Importing this package
imports Flask: the thin clients never do.
"""

from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
