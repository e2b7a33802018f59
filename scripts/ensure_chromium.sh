#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test when it is missing and apt can be used.
# Where it cannot be installed, the browser test skips itself with a message saying why.
set -u
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "Installing Debian's chromium for the browser test..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
        && exit 0
fi
echo "warning: /usr/bin/chromium is not installed and apt-get is not usable here; the browser test will be skipped." >&2
exit 0
