#!/usr/bin/env bash
# Prints the path of a chromedriver whose headless Chromium the widget's and the console's browser tests
# (tests/tests/it/widget.rs) drive. Debian's chromium and chromium-driver packages are
# installed with apt-get when either is missing (as root, or through sudo when it does
# not ask for a password); both must come from the same package version. Only the
# chromedriver path goes to stdout, so callers can capture it:
#   SALES_CHROMEDRIVER="$(scripts/browser-env.sh)"
# The Chromium next to it is found by the tests as SALES_CHROMIUM or /usr/bin/chromium.
set -euo pipefail

chromium="${SALES_CHROMIUM:-/usr/bin/chromium}"
driver="${SALES_CHROMEDRIVER:-/usr/bin/chromedriver}"

if [[ -x "$chromium" && -x "$driver" ]]; then
  echo "$driver"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "browser-env: $chromium or $driver is missing and there is no apt-get to install them;" \
    "install Chromium and its chromedriver (of the same version) and set SALES_CHROMIUM and SALES_CHROMEDRIVER" >&2
  exit 1
fi

as_root=()
if [[ "$(id -u)" != 0 ]]; then
  if sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "browser-env: installing chromium and chromium-driver needs root: run" \
      "'sudo apt-get install -y chromium chromium-driver' once" >&2
    exit 1
  fi
fi

echo "browser-env: installing chromium and chromium-driver with apt-get" >&2
"${as_root[@]}" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
  chromium chromium-driver >&2

for path in "$chromium" "$driver"; do
  if [[ ! -x "$path" ]]; then
    echo "browser-env: $path is still missing after the install" >&2
    exit 1
  fi
done
echo "$driver"
