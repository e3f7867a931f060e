#!/usr/bin/env bash
# The browser test (test/web.test.ts) drives Debian's Chromium through playwright-core; it never downloads a
# browser. Install the package when it is missing and we can (root with apt-get); otherwise say how.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser test..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
else
  echo "note: /usr/bin/chromium is missing; the browser test will fail. Install it with: sudo apt-get install chromium" >&2
fi
