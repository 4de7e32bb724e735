# Sourced by the test scripts: `apt_need CMD_OR_PATH PACKAGE ...` pairs; installs with apt-get the
# packages whose command (or file, if it contains a slash) is missing. Root or sudo.
apt_need() {
  local missing=()
  while [ $# -ge 2 ]; do
    if [[ $1 == */* ]]; then [ -e "$1" ] || missing+=("$2"); else command -v "$1" >/dev/null || missing+=("$2"); fi
    shift 2
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
