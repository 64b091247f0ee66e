#!/usr/bin/env bash
# Install the Debian packages the test suite needs, if missing. Idempotent: when every package is
# already installed it changes nothing and does not touch the network. Run as root (CI does):
#   bash tools/install-test-deps.sh            # install what is missing
#   bash tools/install-test-deps.sh --check    # only list what is missing (exit 1 if any)
#
# One package per line, with the tests that need it. Tests that miss a tool fail saying which
# package to install; they never skip.
set -euo pipefail

PACKAGES=(
  xvfb               # tests/test_input_sources.py: a private X display for pynput (Xvfb)
  xdotool            # tests/test_input_sources.py: moves the pointer, presses keys (XTEST)
  libportaudio2      # tests/test_microphone.py: PortAudio, which sounddevice loads
  libasound2-plugins # tests/test_microphone.py (slow_audio): ALSA's pulse device
  pulseaudio         # tests/test_microphone.py (slow_audio): a private null-sink server
  pulseaudio-utils   # tests/test_microphone.py (slow_audio): pacat plays into the null sink
  chromium           # tests/test_plot_dashboard.py, test_cli_rough_edges.py: headless browser
  iproute2           # tests/test_multihost.py: ip netns, veth, bridge; ss
  openssh-server     # tests/test_multihost.py: sshd inside a namespace (a remote host)
  openssh-client     # tests/test_multihost.py: ssh -tt starts a host's share; ssh-keygen
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-test-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
echo "install-test-deps: missing: ${missing[*]}"
if [ "${1:-}" = "--check" ]; then
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-test-deps: run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: pulseaudio would otherwise bring a desktop's worth of packages
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-test-deps: installed ${missing[*]}"
