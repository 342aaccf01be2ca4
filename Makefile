# twostep: `make test` and `make demo` work on a fresh Debian 12 (bookworm) or 13 (trixie)
# machine. `make test` runs the suite on this machine's release and then again inside a
# chroot of the other one (tests/release/other-release); `make test-here` runs only the first.
# They install what they need: Debian packages (when missing, one apt-get update) and a
# virtual environment in .venv built on Debian's /usr/bin/python3, the interpreter that
# pam_python embeds and that the dovecot user can reach.

SHELL := /bin/bash
PYTHON := /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PACKAGES := python3-venv slapd ldap-utils dovecot-imapd dovecot-pop3d dovecot-auth-lua \
	lua-socket lua5.4 postfix zbar-tools libpam-python pamtester python3-pam libpam0g-dev gcc \
	libc6-dev openssh-server openssh-client chromium libpam-google-authenticator oathtool \
	libpam-oath dovecot-ldap debootstrap nginx roundcube-core roundcube-sqlite3 php-fpm \
	php-sqlite3 \
	build-essential debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools \
	dpkg-dev \
	lintian fail2ban logrotate man-db groff-base iproute2
# Debian 12's pass runs the suite against Debian's own Python libraries, the ones the
# package depends on and the oldest the project supports (a venv that sees them, with
# only the development tools from pip); Debian 13's runs against pip's newest.
CODENAME := $(shell . /etc/os-release && echo $$VERSION_CODENAME)
DEBIAN_LIBS ?= $(if $(filter bookworm,$(CODENAME)),yes,no)
PYTHON_DEBS := python3-ldap3 python3-pyotp python3-argon2 python3-yaml python3-cryptography \
	python3-flask python3-waitress python3-segno python3-cffi
ifeq ($(DEBIAN_LIBS),yes)
DEB_PACKAGES += $(PYTHON_DEBS)
VENV_FLAGS := --system-site-packages
PIP_FLAGS := -c tests/release/debian-libs.txt
endif
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

RESULTS := /var/cache/twostep/results-native.xml
RESULTS_OTHER := /var/cache/twostep/results-other.xml

PREFIX ?= /usr/local
# install and uninstall write and remove under these: absolute, one word each
ifneq ($(DESTDIR),)
override DESTDIR := $(abspath $(DESTDIR))
endif
ifneq ($(words $(PREFIX)),1)
$(error PREFIX must be one absolute path without spaces)
endif
SYSCONFDIR ?= /etc
LIBDIR = $(DESTDIR)$(PREFIX)/lib/twostep
CLIENTDIR = $(LIBDIR)/client
SHAREDIR = $(DESTDIR)$(PREFIX)/share/twostep
# systemd and tmpfiles read the administrator's /usr/local/lib as well as dpkg's /usr/lib
UNITDIR ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
MANDIR = $(DESTDIR)$(PREFIX)/share/man

.PHONY: test test-here test-other-release lint typecheck unit deps venv venv-libs demo demo-stop bench fuzz screenshots clean install install-clients install-roundcube uninstall

# Both releases are always run; the make fails if either did, and the last line counts both.
test:
	@rm -f $(RESULTS) $(RESULTS_OTHER); here=0; other=0; \
	$(MAKE) --no-print-directory test-here || here=$$?; \
	$(MAKE) --no-print-directory test-other-release || other=$$?; \
	$(PYTHON) tests/release/summary.py $$here $$other

test-here: deps venv lint typecheck
	rm -f $(RESULTS)
	TWOSTEP_DEBIAN_LIBS=$(DEBIAN_LIBS) $(BIN)/pytest -q --junitxml=$(RESULTS)

test-other-release: deps
	TWOSTEP_RESULTS=$(RESULTS_OTHER) bash tests/release/other-release

CHECKED := pam_twostep tests bench checkpassword/twostep-checkpassword

lint: venv
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)

typecheck: venv
	$(BIN)/mypy --strict pam_twostep checkpassword/twostep-checkpassword

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    -o Dpkg::Options::=--force-confold $$missing; \
	fi

# A venv made for the other DEBIAN_LIBS is made anew.
venv: venv-libs $(VENV)/.installed

venv-libs:
	@[ ! -e $(VENV)/.installed ] || [ "$$(cat $(VENV)/.debian-libs 2>/dev/null)" = $(DEBIAN_LIBS) ] || \
	  { echo "remaking $(VENV) for DEBIAN_LIBS=$(DEBIAN_LIBS)"; rm -rf $(VENV); }

$(VENV)/.installed: pyproject.toml tests/release/debian-libs.txt | deps
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(PIP_FLAGS) -e '.[dev]'
	echo $(DEBIAN_LIBS) > $(VENV)/.debian-libs
	touch $@

DEMO_DIR ?= /tmp/twostep-demo

demo: deps venv
	$(BIN)/python -m pam_twostep.lab.demo --dir $(DEMO_DIR)

demo-stop: venv
	$(BIN)/twostep lab down --dir $(DEMO_DIR)

# Measures logins through every path side by side (several minutes); see docs/performance.md.
bench: deps venv
	$(BIN)/python bench/bench.py

# Every fuzz target for FUZZ_RUNS inputs each (make test runs them briefly); see
# tests/fuzz/README.md.
FUZZ_RUNS ?= 100000
fuzz: deps venv
	for target in checkpassword protocol config records; do \
	  $(BIN)/python tests/fuzz/run.py $$target --runs $(FUZZ_RUNS) || exit 1; \
	done

# The portal's pages as the browser test sees them, for the README (docs/screenshots/).
screenshots: deps venv
	$(BIN)/pytest -q tests/test_portal_browser.py
	install -d docs/screenshots
	cp screenshots/*.png docs/screenshots/

# The Roundcube plugin, into Debian's Roundcube (roundcube-core): the code under
# /usr/share/roundcube/plugins/twostep, linked from /var/lib/roundcube/plugins as Debian
# links its own, its settings in /etc/roundcube/plugins/twostep/config.inc.php (kept if
# there), readable by www-data only. Add 'twostep' to $$config['plugins'] afterwards.
RC_SHARE = $(DESTDIR)/usr/share/roundcube/plugins/twostep
RC_ETC = $(DESTDIR)/etc/roundcube/plugins/twostep
install-roundcube:
	[ -n "$(DESTDIR)" ] || [ -d /usr/share/roundcube ] || { echo "Roundcube is not installed (apt install roundcube-core roundcube-sqlite3)" >&2; exit 1; }
	rm -rf $(RC_SHARE)
	install -d -m 755 $(RC_SHARE) $(RC_ETC)
	cp -r webmail/roundcube/twostep/. $(RC_SHARE)/
	rm -f $(RC_SHARE)/config.inc.php
	[ -e $(RC_ETC)/config.inc.php ] || install -m 640 webmail/roundcube/twostep/config.inc.php.dist $(RC_ETC)/config.inc.php
	chgrp www-data $(RC_ETC)/config.inc.php 2>/dev/null || true
	ln -sfn /etc/roundcube/plugins/twostep/config.inc.php $(RC_SHARE)/config.inc.php
	install -d -m 755 $(DESTDIR)/var/lib/roundcube/plugins
	ln -sfn /usr/share/roundcube/plugins/twostep $(DESTDIR)/var/lib/roundcube/plugins/twostep

# The thin clients: what Dovecot (as the dovecot user) and PAM run on every login. Only
# the protocol module is needed, compiled here so that no login ever has to write bytecode.
install-clients:
	cd $(CURDIR) && $(PYTHON) -m pam_twostep.lab.files $(CLIENTDIR) $(SHAREDIR)

# Everything, for a real host (as root): the daemon in its own virtual environment, the
# clients, the Lua script, the systemd units, the twostep system users, /etc/twostep.
# With DESTDIR set (packaging), files are staged there, written as if installed at
# PREFIX (scripts, bytecode), and no user is created. A second install replaces the
# program and keeps /etc/twostep, the keys and the logrotate file; restart twostepd and
# twostep-portal afterwards. INSTALL_FILES lists what uninstall removes.
INSTALL_FILES = $(PREFIX)/lib/twostep $(PREFIX)/share/twostep $(PREFIX)/share/doc/twostep \
	$(PREFIX)/sbin/twostepd $(PREFIX)/bin/twostep \
	$(UNITDIR)/twostepd.service $(UNITDIR)/twostep-portal.service \
	$(TMPFILESDIR)/twostep.conf \
	$(PREFIX)/share/man/man1/twostep.1 $(PREFIX)/share/man/man5/twostep.yaml.5 \
	$(PREFIX)/share/man/man8/twostepd.8
install: install-clients
	$(PYTHON) -m venv $(LIBDIR)/venv
	$(LIBDIR)/venv/bin/pip install -q --disable-pip-version-check .
	if [ -n "$(DESTDIR)" ]; then \
	  grep -rlI -F -- "$(LIBDIR)" $(LIBDIR)/venv/bin $(LIBDIR)/venv/pyvenv.cfg | \
	    xargs -r sed -i 's|$(LIBDIR)|$(PREFIX)/lib/twostep|g'; \
	fi
	$(LIBDIR)/venv/bin/python -m compileall -q -f $(if $(DESTDIR),-s $(DESTDIR) -p /) \
	  $(LIBDIR)/venv/lib
	install -d -m 755 $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/doc/twostep
	ln -sfn $(PREFIX)/lib/twostep/venv/bin/twostepd $(DESTDIR)$(PREFIX)/sbin/twostepd
	install -d -m 755 $(DESTDIR)$(PREFIX)/bin
	ln -sfn $(PREFIX)/lib/twostep/venv/bin/twostep $(DESTDIR)$(PREFIX)/bin/twostep
	install -m 644 README.md CHANGELOG.md $(DESTDIR)$(PREFIX)/share/doc/twostep/
	cp -r ldap_schema config checkpassword webmail $(SHAREDIR)/
	ln -sfn ../../twostep/ldap_schema $(DESTDIR)$(PREFIX)/share/doc/twostep/ldap_schema
	install -d -m 755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(TMPFILESDIR)
	for unit in twostepd twostep-portal; do \
	  sed 's|/usr/local|$(PREFIX)|g' config/systemd/$$unit.service \
	    > $(DESTDIR)$(UNITDIR)/$$unit.service; \
	done
	install -m 644 config/tmpfiles.d/twostep.conf $(DESTDIR)$(TMPFILESDIR)/twostep.conf
	install -d -m 755 $(MANDIR)/man1 $(MANDIR)/man5 $(MANDIR)/man8 \
	  $(DESTDIR)$(SYSCONFDIR)/logrotate.d
	install -m 644 docs/man/twostep.1 $(MANDIR)/man1/
	install -m 644 docs/man/twostep.yaml.5 $(MANDIR)/man5/
	install -m 644 docs/man/twostepd.8 $(MANDIR)/man8/
	[ -e $(DESTDIR)$(SYSCONFDIR)/logrotate.d/twostep ] || \
	  install -m 644 config/logrotate/twostep $(DESTDIR)$(SYSCONFDIR)/logrotate.d/twostep
	install -d -m 755 $(DESTDIR)$(SYSCONFDIR)/twostep
	[ -e $(DESTDIR)$(SYSCONFDIR)/twostep/twostep.yaml ] || \
	  install -m 640 config/twostep.yaml $(DESTDIR)$(SYSCONFDIR)/twostep/twostep.yaml
	if [ -z "$(DESTDIR)" ]; then \
	  getent passwd twostep >/dev/null || \
	    useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin twostep; \
	  chgrp twostep $(SYSCONFDIR)/twostep $(SYSCONFDIR)/twostep/twostep.yaml; \
	  chmod 750 $(SYSCONFDIR)/twostep; \
	  install -d -m 700 -o twostep -g twostep $(SYSCONFDIR)/twostep/keys; \
	  [ -n "$$(find $(SYSCONFDIR)/twostep/keys -name '*.key' -print -quit)" ] || \
	    (umask 077; head -c 32 /dev/urandom | base64 > $(SYSCONFDIR)/twostep/keys/k1.key; \
	     chown twostep:twostep $(SYSCONFDIR)/twostep/keys/k1.key); \
	  getent passwd twostep-portal >/dev/null || \
	    useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin \
	      --groups twostep twostep-portal; \
	  getent group twostep-clients >/dev/null || groupadd --system twostep-clients; \
	  for member in twostep twostep-portal dovecot postfix; do \
	    if getent passwd $$member >/dev/null; then usermod -a -G twostep-clients $$member; fi; \
	  done; \
	  getent passwd vmail >/dev/null || \
	    useradd --system --user-group --home-dir /var/vmail --no-create-home \
	      --shell /usr/sbin/nologin vmail; \
	  [ -d /var/vmail ] || install -d -m 770 -o vmail -g vmail /var/vmail; \
	  [ -d /var/log/twostep ] || install -d -m 750 -o twostep -g adm /var/log/twostep; \
	  [ -e /var/log/twostep/audit.log ] || \
	    install -m 640 -o twostep -g adm /dev/null /var/log/twostep/audit.log; \
	  [ -e $(SYSCONFDIR)/twostep/portal.key ] || \
	    (umask 077; head -c 32 /dev/urandom | base64 > $(SYSCONFDIR)/twostep/portal.key; \
	     chown twostep-portal: $(SYSCONFDIR)/twostep/portal.key); \
	fi
	@echo "installed; next: the LDAP schema, the service identity and its password (README)"
	@echo "(an upgrade: systemctl daemon-reload; systemctl restart twostepd twostep-portal)"

# What install added, with the same PREFIX; the site's own files stay: /etc/twostep
# (configuration, keys, secrets), a logrotate file changed since, the system users and
# groups, /var/vmail and /var/log/twostep. Stop and disable the units first.
uninstall:
	@case "$(PREFIX)" in /?*) ;; *) echo "PREFIX=$(PREFIX): not an absolute folder" >&2; exit 1;; esac
	@if [ -z "$(DESTDIR)" ] && dpkg -S $(PREFIX)/lib/twostep >/dev/null 2>&1; then \
	  echo "$(PREFIX)/lib/twostep is the Debian package's: apt remove twostep" >&2; exit 1; fi
	rm -rf $(addprefix $(DESTDIR),$(INSTALL_FILES))
	-rmdir $(DESTDIR)$(UNITDIR) $(DESTDIR)$(dir $(UNITDIR)) $(DESTDIR)$(TMPFILESDIR) \
	  $(MANDIR)/man1 $(MANDIR)/man5 $(MANDIR)/man8 $(DESTDIR)$(PREFIX)/share/doc 2>/dev/null
	if cmp -s config/logrotate/twostep $(DESTDIR)$(SYSCONFDIR)/logrotate.d/twostep; then \
	  rm -f $(DESTDIR)$(SYSCONFDIR)/logrotate.d/twostep; fi
	@echo "uninstalled; kept: $(SYSCONFDIR)/twostep (configuration, keys), /var/log/twostep," \
	  "/var/vmail, the users twostep, twostep-portal, vmail and the group twostep-clients"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
