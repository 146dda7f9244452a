# The frame every remote step runs in (as root, via sudo). The step itself follows: `put` calls for
# its files, then `check` (the daemon's own checker), then what it runs once the files are in place.
# New files only replace old ones for good when the check passes; otherwise the old ones come back,
# the running daemons never see the bad config, and the step fails with the checker's message.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
umask 022
STEP=${1:?step name}
SECRETS=$(mktemp -d /run/selfhost-secrets.XXXXXX)
BACKUP=$(mktemp -d /run/selfhost-backup.XXXXXX)
trap 'rm -rf "$SECRETS" "$BACKUP"' EXIT
CHANGED=()
INSTALLED=()
# The files this step installed last time: one it no longer declares is removed (prune).
OWNED_FILE=/var/lib/selfhost/files/$STEP
OWNED=()
[ -f "$OWNED_FILE" ] && mapfile -t OWNED < <(grep . "$OWNED_FILE")
DECLARED=()
# Changes an earlier run installed but did not get to act on (it failed after its check passed).
PENDING_FILE=/var/lib/selfhost/pending/$STEP
PENDING=()
[ -f "$PENDING_FILE" ] && mapfile -t PENDING < <(grep . "$PENDING_FILE")

log() { printf '[%s] %s\n' "$STEP" "$*"; }
# On failure: where; and when a unit would not (re)start, what it logged, so the reason is in `pulumi up`'s output.
failed() {
  local code=$1 line=$2 command=$3 word
  log "failed (exit $code) at line $line: $command" >&2
  [[ $command == systemctl\ * ]] || return 0
  for word in ${command#systemctl }; do
    [[ $word == -* || $word =~ ^(start|restart|reload|reload-or-restart|try-restart|enable|is-active)$ ]] && continue
    journalctl -u "$word" -n 15 --no-pager -o short-iso >&2 || true
  done
}
trap 'failed $? $LINENO "$BASH_COMMAND"' ERR

# Secrets arrive on stdin only, one "name base64" line each; they land in a root-only tmpfs dir.
while read -r name value; do
  [ -n "$name" ] && printf '%s' "$value" | base64 -d > "$SECRETS/$name"
done

# put PATH MODE OWNER:GROUP < content — install a file if its content or metadata differ.
put() {
  local path=$1 mode=$2 owner=$3 dir new
  dir=$(dirname "$path")
  DECLARED+=("$path")
  mkdir -p "$dir"
  new=$(mktemp "$dir/.selfhost-new.XXXXXX")
  cat > "$new"
  chmod "$mode" "$new"
  chown "$owner" "$new"
  if [ -f "$path" ] && cmp -s "$new" "$path" \
     && [ "$(stat -c %a:%U:%G "$new")" = "$(stat -c %a:%U:%G "$path")" ]; then
    rm -f "$new"
    return 0
  fi
  if [ -e "$path" ]; then
    mkdir -p "$BACKUP$dir"
    cp -a "$path" "$BACKUP$path"
  else
    printf '%s\n' "$path" >> "$BACKUP/.created"
  fi
  mv -f "$new" "$path"
  CHANGED+=("$path")
}

# prune — remove the config files an earlier version of this step installed and this one no longer
# declares. Files on the data volume are data (certificates, keys): a step never deletes those.
prune() {
  local path
  for path in "${OWNED[@]}"; do
    [[ " ${DECLARED[*]} " == *" $path "* ]] && continue
    [[ $path == "$DATA_DIR"/* ]] && continue
    [ -e "$path" ] || continue
    mkdir -p "$BACKUP$(dirname "$path")"
    cp -a "$path" "$BACKUP$path"
    rm -f "$path"
    CHANGED+=("$path")
  done
}

# put_secret NAME PATH MODE OWNER:GROUP — like put, with the content of a secret from stdin.
put_secret() { put "$2" "$3" "$4" < "$SECRETS/$1"; }

changed() { [ ${#CHANGED[@]} -gt 0 ] || [ ${#INSTALLED[@]} -gt 0 ] || [ ${#PENDING[@]} -gt 0 ]; }

# changed_in PATH… — did one of these files, or a file under one of these directories, change (or a package get installed)?
changed_in() {
  local path dir
  [ ${#INSTALLED[@]} -gt 0 ] && return 0
  for path in "${CHANGED[@]}" "${PENDING[@]}"; do
    [[ $path == package:* ]] && return 0
    for dir in "$@"; do [[ $path == "$dir" || $path == "$dir"/* ]] && return 0; done
  done
  return 1
}

rollback() {
  local path
  for path in "${CHANGED[@]}"; do
    if [ -e "$BACKUP$path" ]; then cp -a "$BACKUP$path" "$path"; else rm -f "$path"; fi
  done
  CHANGED=()
}

# check CMD… — run the daemon's checker on the new files; on failure put the old ones back and stop.
check() {
  local out
  if ! out=$("$@" 2>&1); then
    log "check failed: $*"
    printf '%s\n' "$out" >&2
    rollback
    log "previous configuration restored; nothing was reloaded"
    exit 1
  fi
}

# listening PORT UNIT — wait (up to 30 s) until the unit's TCP port on this server takes connections;
# a daemon whose restart returned before it listens (rspamd) answers before the step ends.
listening() {
  local _
  for _ in $(seq 60); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.5; done
  log "$2 does not listen on port $1" >&2
  journalctl -u "$2" -n 15 --no-pager -o short-iso >&2 || true
  return 1
}

# ensure_packages PKG… — install what is missing, nothing else (a re-run must not touch apt).
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  apt-get -q update >/dev/null
  apt-get -q install -y --no-install-recommends -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
  INSTALLED+=("${missing[@]}")
}

# commit — the new files passed their check; remember them until the step has acted on them.
commit() {
  mkdir -p "$(dirname "$OWNED_FILE")"
  printf '%s\n' "${DECLARED[@]}" > "$OWNED_FILE"
  if changed; then
    mkdir -p "$(dirname "$PENDING_FILE")"
    printf '%s\n' "${CHANGED[@]}" "${PENDING[@]}" "${INSTALLED[@]/#/package:}" > "$PENDING_FILE"
  fi
}

finish() {
  rm -f "$PENDING_FILE"
  log "done: ${#CHANGED[@]} file(s) changed${CHANGED[*]:+ (${CHANGED[*]})}, ${#INSTALLED[@]} package(s) installed"
}
