#!/usr/bin/env sh
# Installs Debian's `chromium` for the test that renders report.html headless
# (tests/test_report_browser.py), only when it is absent and this user can install packages
# (root, or sudo without a password). Otherwise it says so and succeeds: the test then skips,
# unless ROBUSTLAB_REQUIRE_CHROMIUM=1 (CI), where it fails.
set -eu
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  SUDO=
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "install-chromium: chromium is absent and this user cannot install packages;" \
       "the report's browser test will skip (apt-get install chromium)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: no apt-get here; install Chromium by hand" >&2
  exit 0
fi
if $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
then
  exit 0
fi
echo "install-chromium: apt-get could not install chromium" >&2
if [ "${ROBUSTLAB_REQUIRE_CHROMIUM:-}" = 1 ]; then exit 1; fi
