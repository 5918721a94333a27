# Shared by scripts/test and scripts/run: make sure PostgreSQL and Redis are reachable, starting
# (or, as root with apt, installing) them when they are not, and say plainly what is missing.

: "${TIERLINE_PG_ADMIN_URL:=postgres://postgres@127.0.0.1:5432/postgres}"
: "${TIERLINE_REDIS_URL:=redis://127.0.0.1:6379}"

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }

pg_up() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -d "$TIERLINE_PG_ADMIN_URL" 2>/dev/null
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
  fi
}

redis_up() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -u "$TIERLINE_REDIS_URL" ping 2>/dev/null)" = "PONG" ]
  else
    (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null
  fi
}

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

wait_for() {
  local check=$1 i
  for i in $(seq 1 30); do "$check" && return 0; sleep 1; done
  return 1
}

ensure_postgres() {
  pg_up && return 0
  if ! command -v pg_ctlcluster >/dev/null 2>&1 && can_install; then
    say "PostgreSQL is not installed; installing it with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$version" ]; then
      say "starting PostgreSQL $version"
      pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster "$version" main start || true
    fi
  fi
  if ! wait_for pg_up; then
    say "PostgreSQL is not reachable at $TIERLINE_PG_ADMIN_URL and could not be started."
    say "Install PostgreSQL 14 or newer and let user 'postgres' connect from 127.0.0.1 without a password"
    say "(trust auth), or set TIERLINE_PG_ADMIN_URL to a superuser URL of a running server."
    return 1
  fi
  # The tests connect over TCP as postgres without a password.
  if ! psql "$TIERLINE_PG_ADMIN_URL" -qAtc 'select 1' >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "PostgreSQL refuses $TIERLINE_PG_ADMIN_URL; set TIERLINE_PG_ADMIN_URL to a superuser URL that works"
    return 1
  fi
}

ensure_redis() {
  redis_up && return 0
  if ! command -v redis-server >/dev/null 2>&1 && can_install; then
    say "Redis is not installed; installing it with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  if command -v redis-server >/dev/null 2>&1; then
    say "starting Redis on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  fi
  if ! wait_for redis_up; then
    say "Redis is not reachable at $TIERLINE_REDIS_URL and could not be started."
    say "Install Redis 7 (redis-server) or set TIERLINE_REDIS_URL to a running server."
    return 1
  fi
}

ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    say "cargo is missing: install Rust 1.94 or newer with rustup (https://rustup.rs)"
    return 1
  fi
}
