"""The portal's pages: sign-in, the Account Security page, and each change it offers.

Every page is server-rendered and works without JavaScript (the script only adds copy,
print and download buttons). Every read and change is one twostepd request made as the
signed-in user, so the lock-out, the policy and the audit trail are the ones every
other path shares. Secrets (new backup codes, a new passcode, the enrollment key) are
shown in the response to the POST that made them and nowhere else: never in a URL,
never in the session, never in a log.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from flask import (
    Flask,
    Request,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from .. import qr, wire
from ..config import Config
from ..continuation import LIFETIME as CONTINUATION_LIFETIME
from ..core.codes import group, split_device_token
from ..core.dates import format_date
from ..core.errors import ConfigError
from ..secretfile import read_secret_file
from . import profiles, rollout, security, stale_clients, webmail
from .mail_sessions import ended_note
from .twostepd import Ask, Refusal, SessionEnded, Twostepd, Unavailable

__all__ = ["create_app", "load_secret_key"]

log = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])
_MAX_FIELD = 1024
_MAIL_SERVICES = (
    ("imap", "IMAP"),
    ("pop3", "POP3"),
    ("smtp", "SMTP"),
    ("eas", "ActiveSync"),
    ("sieve", "Sieve"),
    ("dav", "CalDAV/CardDAV"),
)
_ENROLL_ONLY = frozenset({"setup", "setup_begin", "setup_confirm"})
"""What a session may reach before two-step is set up where policy requires it: the
setup page, the form that begins an enrollment and the one that confirms it."""
_APPS = (
    "Aegis Authenticator (Android)",
    "FreeOTP (Android, iOS)",
    "Google Authenticator (Android, iOS)",
    "Microsoft Authenticator (Android, iOS)",
    "2FAS (Android, iOS)",
    "a password manager that shows one-time codes (KeePassXC, Bitwarden, 1Password)",
)


def load_secret_key(path: Path) -> bytes:
    """The key that signs session cookies: 32 random bytes in base64, mode 0600."""
    text = read_secret_file(path, "portal.secret_key_file")
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ConfigError(f"portal.secret_key_file {path}: not base64") from None
    if len(key) < 32:
        raise ConfigError(f"portal.secret_key_file {path}: needs 32 bytes, has {len(key)}")
    return key


def _when(value: object) -> str:
    if not isinstance(value, int) or value <= 0:
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(value))


def _field(name: str, limit: int = _MAX_FIELD) -> str:
    value = request.form.get(name, "")
    if len(value) > limit or "\0" in value:
        abort(400)
    return value


def _browser_label() -> str:
    agent = request.headers.get("User-Agent", "")
    browser = next(
        (b for b in ("Firefox", "Edg", "Chrome", "Safari") if b in agent), "Browser"
    ).replace("Edg", "Edge")
    system = next(
        (s for s in ("Android", "iPhone", "iPad", "Windows", "Mac OS", "Linux") if s in agent),
        "",
    ).replace("Mac OS", "macOS")
    return f"{browser} on {system}" if system else browser


class _Request(Request):
    """At most 64 parts in a multipart body (413 beyond). Flask reads ``MAX_FORM_PARTS``
    from the configuration only from 3.1 on; 2.2 (Debian 12) would allow Werkzeug's 1000."""

    max_form_parts = 64


def create_app(
    config: Config,
    *,
    secret_key: bytes | None = None,
    ask: Ask = wire.ask,
    clock: Callable[[], float] = time.time,
) -> Flask:
    """The portal as a WSGI application (``serve`` runs it; tests may call it directly)."""
    portal = config.portal
    app = Flask(__name__)
    app.request_class = _Request
    app.secret_key = secret_key or load_secret_key(portal.secret_key_file)
    secure = portal.secure_cookies
    app.config.update(
        SESSION_COOKIE_NAME="__Host-twostep" if secure else "twostep",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    device_cookie = "__Host-twostep-device" if secure else "twostep-device"
    daemon = Twostepd(str(config.daemon.socket), portal.service, ask)
    app.jinja_env.filters["when"] = _when
    app.jinja_env.globals.update(apps=_APPS, mail_services=_MAIL_SERVICES)

    def now() -> int:
        return int(clock())

    def remote() -> str:
        return request.remote_addr or ""

    def device_token() -> str | None:
        token = request.cookies.get(device_cookie)
        return token if token and len(token) <= 128 else None

    def this_device() -> str | None:
        """The id in this browser's device cookie, if the cookie is shaped like a token:
        an id that no device has any more (revoked elsewhere) is possible, and handled."""
        token = device_token()
        parts = split_device_token(token) if token else None
        return parts[0] if parts else None

    def forget_device(response: Response) -> None:
        response.delete_cookie(device_cookie, path="/", secure=secure, samesite="Strict")

    def _no_proof() -> Any:
        """An accepted sign-in without twostepd's session proof: this portal's identity
        is not in daemon.self_service (an admin peer, in daemon.manage, gets none). It
        opens no session: sessions that twostepd cannot end, run with admin rights, are
        what self_service exists to prevent (fail closed)."""
        session.clear()
        log.error(
            "twostepd gave no session proof: list the portal's user in daemon.self_service "
            "(and not in daemon.manage)"
        )
        return render_template("error.html", title="Sign-in is not set up on this server"), 503

    def begin_session(user: str, proof: object, *, strong: bool, enroll_only: bool = False) -> None:
        """``proof`` is twostepd's proof of this sign-in (its ``session``), sent with
        every request for the user: twostepd, not this cookie, decides whether the
        session still stands (issue 14 M4). A portal run as an admin peer gets none."""
        session.clear()
        session.update(
            user=user,
            csrf=security.new_token(),
            started=now(),
            seen=now(),
            strong=now() if strong else None,
            enroll_only=enroll_only,
            proof=proof if isinstance(proof, str) else None,
        )
        session.permanent = True

    def for_user(op: str, **fields: object) -> dict[str, Any]:
        """A request for the signed-in user, with the proof of their sign-in; a change
        that moves the session generation (new password, key, two-step off) answers a
        fresh proof for this session, kept."""
        reply = daemon.call(op, user=session.get("user"), session=session.get("proof"), **fields)
        fresh = reply.get("session")
        if isinstance(fresh, str):
            session["proof"] = fresh
        return reply

    # -- every request -------------------------------------------------------------------

    @app.before_request
    def guard() -> Response | None:
        if "csrf" not in session:
            session["csrf"] = security.new_token()
        if "user" in session:
            if security.session_ended(session, now(), portal.idle_timeout, portal.session_lifetime):
                session.clear()
                session["csrf"] = security.new_token()
                flash("Your session ended. Please sign in again.")
                return redirect(url_for("signin"))
            session["seen"] = now()
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin and origin != request.host_url.rstrip("/"):
                abort(403)
            if not security.tokens_match(session.get("csrf"), request.form.get("csrf")):
                abort(403)
        g.user = session.get("user")
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.update(security.HEADERS)
        if secure:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    @app.errorhandler(Unavailable)
    def unavailable(_: Unavailable) -> tuple[str, int]:
        return render_template("error.html", title="Please try again in a moment"), 503

    @app.errorhandler(SessionEnded)
    def session_ended(_: SessionEnded) -> Response:
        """Signed out elsewhere, the password changed, two-step disabled or reset: this
        cookie, however it was kept, opens nothing any more."""
        session.clear()
        session["csrf"] = security.new_token()
        flash("Your session ended. Please sign in again.")
        return redirect(url_for("signin"))

    @app.errorhandler(Refusal)
    def refusal_not_handled(refusal: Refusal) -> tuple[str, int]:
        """A refusal a page did not expect is still an answer, never a 500."""
        log.info("refusal not handled by the page: %s", refusal.reason)
        flash(refusal.message)
        return render_template("error.html", title="That did not work", code=400), 400

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
    def refused(error: Any) -> tuple[str, int]:
        code = int(getattr(error, "code", 400))
        return render_template("error.html", title="That did not work", code=code), code

    def signed_in(view: _F) -> _F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not g.user:
                return redirect(url_for("signin"))
            if session.get("enroll_only") and request.endpoint not in _ENROLL_ONLY:
                flash("Your organisation requires two-step verification: set it up first.")
                return redirect(url_for("setup"))
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def recent_auth(view: _F) -> _F:
        """Sensitive changes: a password and code given within ``reauth_window``."""

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not security.recent(session, now(), portal.reauth_window):
                flash("Confirm it is you, then make the change again.")
                return redirect(url_for("reauth", next="/"))
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    # -- signing in ----------------------------------------------------------------------

    @app.get("/signin")
    def signin() -> Any:
        if g.user:
            return redirect(url_for("account"))
        return render_template("signin.html")

    @app.post("/signin")
    def signin_password() -> Any:
        user, password = _field("user", 256).strip(), _field("password")
        if not user or not password:
            flash("Enter your user name and password.")
            return render_template("signin.html", user=user), 400
        reply = daemon.auth(user, password, remote(), device_token=device_token())
        result, reason = reply["result"], reply.get("reason")
        if result == "accept":
            if not isinstance(reply.get("session"), str):
                return _no_proof()
            begin_session(
                str(reply["user"]), reply.get("session"), strong=reply.get("method") == "password"
            )
            return redirect(url_for("account"))
        if result == "challenge":
            session.clear()
            session.update(
                csrf=security.new_token(),
                pending={"user": user, "continuation": reply.get("continuation"), "at": now()},
            )
            return redirect(url_for("signin_code"))
        if reason == "enrollment-required":  # the password was right
            if not isinstance(reply.get("session"), str):
                return _no_proof()
            begin_session(
                str(reply.get("user") or user), reply.get("session"), strong=True, enroll_only=True
            )
            return redirect(url_for("setup"))
        if reason == "locked":
            flash("This account is locked after too many failed attempts. Try again later.")
        elif reason in ("throttled", "source-throttled"):
            # Nothing was checked: saying "not right" would send the owner to retry.
            flash("Too many failed sign-ins from your network. Wait a while, then try again.")
        else:
            flash("The user name or password is not right.")
        return render_template("signin.html", user=user), 401

    def pending() -> dict[str, Any] | None:
        waiting = session.get("pending")
        if isinstance(waiting, dict) and now() - int(waiting.get("at", 0)) < (
            CONTINUATION_LIFETIME - 30
        ):
            return waiting
        return None

    @app.get("/signin/code")
    def signin_code() -> Any:
        if pending() is None:
            flash("Please sign in again.")
            return redirect(url_for("signin"))
        return render_template("code.html", label=_browser_label())

    @app.post("/signin/code")
    def signin_code_post() -> Any:
        waiting = pending()
        if waiting is None:
            flash("That took too long. Please sign in again.")
            return redirect(url_for("signin"))
        code = _field("code", 64).strip()
        trust = request.form.get("trust") == "yes"
        label = _field("label", 64).strip() or _browser_label()
        reply = daemon.auth(
            waiting["user"],
            "",
            remote(),
            code=code or None,
            trust_device=trust,
            device_label=label if trust else None,
            continuation=waiting.get("continuation"),
        )
        if reply["result"] == "accept":
            if not isinstance(reply.get("session"), str):
                return _no_proof()
            begin_session(str(reply["user"]), reply.get("session"), strong=True)
            response = redirect(url_for("account"))
            token = reply.get("device_token")
            if isinstance(token, str):
                policy = for_user("status")["status"]["policy"]
                lifetime = int(policy["device_lifetime"])
                response.set_cookie(
                    device_cookie,
                    token,
                    max_age=lifetime,
                    secure=secure,
                    httponly=True,
                    samesite="Strict",
                    path="/",
                )
            return response
        if reply.get("reason") == "locked":
            session.pop("pending", None)
            flash("This account is locked after too many failed attempts. Try again later.")
            return redirect(url_for("signin"))
        flash("That code is not right. Use the newest code from your app, or a backup code.")
        return render_template("code.html", label=label), 401

    @app.post("/signout")
    def signout() -> Any:
        """Ends every portal session of the account in twostepd, copies of this cookie
        included; the browser is signed out even when twostepd cannot be told."""
        if session.get("user") and session.get("proof"):
            try:
                for_user("session-end")
            except (Unavailable, Refusal, SessionEnded):
                log.warning("twostepd was not told of a sign-out")
        session.clear()
        flash("You are signed out.")
        return redirect(url_for("signin"))

    @app.get("/reauth")
    @signed_in
    def reauth() -> Any:
        status = for_user("status")["status"]
        return render_template(
            "reauth.html",
            enabled=status["enabled"],
            next=security.safe_next(request.args.get("next")),
        )

    @app.post("/reauth")
    @signed_in
    def reauth_post() -> Any:
        target = security.safe_next(request.form.get("next"))
        password, code = _field("password"), _field("code", 64).strip()
        reply = daemon.auth(g.user, password, remote(), code=code or None)
        method = reply.get("method")
        if reply["result"] == "accept" and method in ("totp", "backup-code", "password"):
            session["strong"] = now()
            if isinstance(reply.get("session"), str):
                session["proof"] = reply["session"]
            return redirect(target)
        if reply.get("reason") == "locked":
            session.clear()
            flash("This account is locked after too many failed attempts. Try again later.")
            return redirect(url_for("signin"))
        flash("The password or code is not right.")
        return redirect(url_for("reauth", next=target))

    # -- the Account Security page -------------------------------------------------------

    @app.get("/")
    @signed_in
    def account() -> Any:
        status = for_user("status")["status"]
        return render_template(
            "account.html",
            status=status,
            policy=status["policy"],
            this_device=this_device(),
            now=now(),
        )

    @app.get("/setup")
    @signed_in
    def setup() -> Any:
        """First setup, or (two-step on) a new phone: then the form asks a code too."""
        status = for_user("status")["status"]
        return render_template("setup.html", policy=status["policy"], replacing=status["enabled"])

    @app.post("/setup")
    @signed_in
    def setup_begin() -> Any:
        """twostepd decides: while two-step is on it wants the code (or a backup code)
        given here, whatever this session has proved before (a trusted browser, a code
        at sign-in, a stolen cookie are all the same to it)."""
        try:
            begun = for_user(
                "enroll-begin",
                password=_field("password"),
                code=_field("code", 64).strip() or None,
                service=daemon.service,
                remote=remote(),
            )
        except Refusal as refusal:
            flash(refusal.message)
            return redirect(url_for("setup"))
        return render_template(
            "setup_scan.html",
            qr=qr.svg(str(begun["uri"]), scale=5),
            key=begun["key"],
            uri=begun["uri"],
            expires=begun.get("expires"),
        )

    @app.post("/setup/confirm")
    @signed_in
    def setup_confirm() -> Any:
        try:
            confirmed = for_user(
                "enroll-confirm",
                code=_field("code", 64).strip(),
                service=daemon.service,
                remote=remote(),
            )
        except Refusal as refusal:
            flash(refusal.message)
            return render_template("setup_retry.html"), 400
        # A new key confirmed is no re-authentication: "strong" stays what it was.
        session["enroll_only"] = False
        return render_template("codes.html", codes=confirmed["backup_codes"], first=True)

    @app.post("/codes")
    @signed_in
    @recent_auth
    def codes() -> Any:
        try:
            fresh = for_user("codes-regenerate")
        except Refusal as refusal:
            flash(refusal.message)
            return redirect(url_for("account"))
        return render_template("codes.html", codes=fresh["backup_codes"], first=False)

    @app.post("/passcodes")
    @signed_in
    @recent_auth
    def passcode_add() -> Any:
        label = _field("label", 64).strip()
        wanted = {s for s, _ in _MAIL_SERVICES} & set(request.form.getlist("services"))
        try:
            made = for_user("passcode-add", label=label, services=",".join(sorted(wanted)))
        except Refusal as refusal:
            flash(refusal.message)
            return redirect(url_for("account"))
        compact = str(made["passcode"]).upper().replace("-", "").replace(" ", "")
        return render_template(
            "passcode.html",
            label=made.get("label", label),
            grouped=group(compact, 4, " "),
            compact=compact,
            services=[name for value, name in _MAIL_SERVICES if value in wanted],
            download=offer_download(made),
        )

    @app.post("/passcodes/revoke")
    @signed_in
    def passcode_revoke() -> Any:
        label = _field("label", 64)
        try:
            reply = for_user("passcode-revoke", label=label)
            flash(f"The passcode {label!r} no longer works." + ended_note(reply))
        except Refusal as refusal:
            flash(refusal.message)
        return redirect(url_for("account"))

    @app.post("/devices/revoke")
    @signed_in
    def device_revoke() -> Any:
        device = _field("device", 64)
        try:
            for_user("device-revoke", device=device)
            flash("That device will be asked for a code again.")
        except Refusal as refusal:
            flash(refusal.message)
        response = redirect(url_for("account"))
        if device == this_device():
            forget_device(response)
        return response

    @app.post("/devices/revoke-others")
    @signed_in
    def device_revoke_others() -> Any:
        """Keeps this browser's device; a cookie that names none (the device was revoked
        elsewhere, or the cookie is junk) keeps nothing, and is forgotten."""
        mine = this_device()
        response = redirect(url_for("account"))
        try:
            if mine:
                try:
                    for_user("device-revoke-others", device=mine)
                except Refusal as refusal:
                    if refusal.reason != "no-such-device":
                        raise
                    mine = None
            if not mine:
                for_user("device-revoke-all")
        except Refusal as refusal:
            flash(refusal.message)
            return response
        if not mine and request.cookies.get(device_cookie) is not None:
            forget_device(response)
        flash("Every other device will be asked for a code again.")
        return response

    @app.get("/password")
    @signed_in
    def password() -> Any:
        return render_template("password.html")

    @app.post("/password")
    @signed_in
    @recent_auth
    def password_change() -> Any:
        old, new, again = _field("old"), _field("new"), _field("again")
        if new != again:
            flash("The two new passwords are not the same.")
            return render_template("password.html"), 400
        try:
            reply = for_user(
                "password-change",
                old=old,
                new=new,
                keep_device=this_device(),
                service=daemon.service,
                remote=remote(),
            )
        except Refusal as refusal:
            flash(refusal.message)
            return render_template("password.html"), 400
        flash(
            "Your password was changed. Every application passcode and every other trusted "
            "device was revoked." + ended_note(reply)
        )
        return redirect(url_for("account"))

    @app.get("/disable")
    @signed_in
    def disable() -> Any:
        status = for_user("status")["status"]
        return render_template("disable.html", status=status)

    @app.post("/disable")
    @signed_in
    def disable_post() -> Any:
        try:
            reply = for_user(
                "disable",
                password=_field("password"),
                code=_field("code", 64).strip(),
                service=daemon.service,
                remote=remote(),
            )
        except Refusal as refusal:
            flash(refusal.message)
            return redirect(url_for("disable"))
        flash(
            "Two-step verification is off. Your application passcodes no longer work."
            + ended_note(reply)
        )
        return redirect(url_for("account"))

    app.add_template_filter(format_date, "date")
    webmail.register(app, for_user, signed_in)
    stale_clients.register(app, for_user, signed_in)
    rollout.register(app, for_user, signed_in)
    offer_download = profiles.register(app, config, for_user, signed_in, clock)
    return app
