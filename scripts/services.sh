# shellcheck shell=bash
# Service helpers for scripts/setup.sh: URL parsing, apt installs, PostgreSQL
# (+ PostGIS) and Redis. Sourced, not executed; expects `set -euo pipefail`.
#
# Public functions:
#   load_settings            COOP_DATABASE_URL / COOP_REDIS_URL from env, .env, defaults
#   parse_db_url URL         -> PG_HOST PG_PORT PG_USER PG_PASSWORD PG_DB PG_URL (libpq)
#   parse_redis_url URL      -> REDIS_HOST REDIS_PORT REDIS_USER REDIS_PASSWORD REDIS_DB
#   apt_install PKG...       apt-get install (one `apt-get update` per run, waits for dpkg lock)
#   ensure_service_packages  server/client/redis packages that are missing
#   ensure_postgres          start the local cluster if nothing answers at PG_HOST:PG_PORT
#   ensure_postgis_package   postgresql-<major>-postgis-3 for the running server
#   ensure_redis             start a local redis-server if nothing answers PONG
#   ensure_role_and_db       create the URL's role and database when missing

DEFAULT_DATABASE_URL="postgresql+asyncpg://coopride:coopride@127.0.0.1:5432/coopride"
DEFAULT_REDIS_URL="redis://127.0.0.1:6379/0"
PG_WAIT_SECONDS=${PG_WAIT_SECONDS:-30}
REDIS_WAIT_SECONDS=${REDIS_WAIT_SECONDS:-15}
REDIS_LOGFILE=/tmp/coopride-redis.log

# Bounded connect attempts, and no ~/.psqlrc surprises.
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}

log() { printf '[setup] %s\n' "$*"; }
die() {
    printf '[setup] ERROR: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- settings

# dotenv_get KEY FILE: print the last KEY=value in FILE (optional `export`,
# optional single/double quotes, trailing ` # comment` on unquoted values).
# The file is parsed, never sourced. Returns 1 when KEY is absent.
dotenv_get() {
    local key=$1 file=$2 line val found=1 result=""
    [[ -f $file ]] || return 1
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?${key}[[:space:]]*=[[:space:]]*(.*)$ ]] || continue
        val=${BASH_REMATCH[2]}
        if [[ $val =~ ^\"(.*)\"[[:space:]]*$ ]] || [[ $val =~ ^\'(.*)\'[[:space:]]*$ ]]; then
            val=${BASH_REMATCH[1]}
        else
            val=${val%%[[:space:]]#*}
            val=${val%"${val##*[![:space:]]}"}
        fi
        result=$val
        found=0
    done <"$file"
    [[ $found -eq 0 ]] && printf '%s' "$result"
    return $found
}

# Environment wins over .env, .env wins over the defaults (same order as the app).
load_settings() {
    local root=$1 v
    if [[ -z ${COOP_DATABASE_URL:-} ]] && v=$(dotenv_get COOP_DATABASE_URL "$root/.env"); then
        COOP_DATABASE_URL=$v
    fi
    if [[ -z ${COOP_REDIS_URL:-} ]] && v=$(dotenv_get COOP_REDIS_URL "$root/.env"); then
        COOP_REDIS_URL=$v
    fi
    COOP_DATABASE_URL=${COOP_DATABASE_URL:-$DEFAULT_DATABASE_URL}
    COOP_REDIS_URL=${COOP_REDIS_URL:-$DEFAULT_REDIS_URL}
    export COOP_DATABASE_URL COOP_REDIS_URL
}

# ---------------------------------------------------------------- URL parsing

urldecode() {
    local s=${1//\\/\\\\}
    printf '%b' "${s//%/\\x}"
}

# split_url URL -> _SCHEME _USER _PASS _HOST _PORT _PATH _QUERY (all but _QUERY decoded)
split_url() {
    local re='^([A-Za-z][A-Za-z0-9+.-]*)://(([^:@/]*)(:([^@]*))?@)?(\[[^]]*\]|[^:/?]*)(:([0-9]+))?(/([^?#]*))?(\?([^#]*))?(#.*)?$'
    [[ $1 =~ $re ]] || die "cannot parse URL: $1"
    _SCHEME=${BASH_REMATCH[1]}
    _USER=$(urldecode "${BASH_REMATCH[3]}")
    _PASS=$(urldecode "${BASH_REMATCH[5]}")
    _HOST=${BASH_REMATCH[6]}
    _HOST=${_HOST#[}
    _HOST=${_HOST%]}
    _PORT=${BASH_REMATCH[8]}
    _PATH=$(urldecode "${BASH_REMATCH[10]}")
    _QUERY=${BASH_REMATCH[12]}
}

# parse_db_url URL: PG_HOST PG_PORT PG_USER PG_PASSWORD PG_DB, and PG_URL, the
# libpq form of the URL for psql: `postgresql+asyncpg://` -> `postgresql://`,
# asyncpg's `ssl=` -> `sslmode=`, other driver-only query parameters dropped.
parse_db_url() {
    local url=$1 base q kv k v query=()
    split_url "$url"
    case $_SCHEME in
        postgres | postgresql | postgres+* | postgresql+*) ;;
        *) die "COOP_DATABASE_URL must be a postgresql:// URL, got scheme '$_SCHEME'" ;;
    esac
    PG_HOST=$_HOST
    PG_PORT=$_PORT
    if [[ -n $_QUERY ]]; then
        IFS='&' read -r -a q <<<"$_QUERY"
        for kv in "${q[@]}"; do
            k=${kv%%=*}
            v=${kv#*=}
            case $k in
                host) PG_HOST=$(urldecode "$v") query+=("$kv") ;;
                port) PG_PORT=$v query+=("$kv") ;;
                ssl) query+=("sslmode=$v") ;;
                sslmode | sslrootcert | sslcert | sslkey | connect_timeout | application_name | options)
                    query+=("$kv") ;;
            esac
        done
    fi
    PG_HOST=${PG_HOST:-127.0.0.1}
    PG_PORT=${PG_PORT:-5432}
    PG_USER=${_USER:-coopride}
    PG_PASSWORD=$_PASS
    PG_DB=${_PATH:-$PG_USER}
    base=${url#*://}
    base=${base%%[?#]*}
    PG_URL="postgresql://$base"
    if [[ ${#query[@]} -gt 0 ]]; then
        PG_URL+="?$(IFS='&' && printf '%s' "${query[*]}")"
    fi
}

parse_redis_url() {
    split_url "$1"
    case $_SCHEME in
        redis) ;;
        *) die "COOP_REDIS_URL must be a redis:// URL, got scheme '$_SCHEME'" ;;
    esac
    REDIS_HOST=${_HOST:-127.0.0.1}
    REDIS_PORT=${_PORT:-6379}
    REDIS_USER=$_USER
    REDIS_PASSWORD=$_PASS
    REDIS_DB=${_PATH:-0}
}

# Only servers on this machine can be installed/started/administered here.
is_local_host() {
    case $1 in
        '' | localhost | 127.* | ::1 | 0.0.0.0 | /*) return 0 ;;
    esac
    [[ $1 == "$(hostname 2>/dev/null || true)" ]]
}

# ---------------------------------------------------------------- privileges

# as_root CMD...: run as root (directly, or with sudo when not root).
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif have sudo; then
        sudo "$@"
    else
        die "need root for: $* (not root and sudo is not installed)"
    fi
}

# as_postgres CMD...: run as the OS `postgres` user (local-socket superuser).
as_postgres() {
    if [[ $EUID -eq 0 ]] && have runuser; then
        (cd / && runuser -u postgres -- "$@")
    elif [[ $EUID -eq 0 ]]; then
        (cd / && su postgres -s /bin/bash -c "$(printf '%q ' "$@")")
    elif [[ $(id -un) == postgres ]]; then
        "$@"
    elif have sudo; then
        (cd / && sudo -u postgres "$@")
    else
        die "need to run as the postgres OS user for: $* (not root and no sudo)"
    fi
}

# ---------------------------------------------------------------- apt

APT_UPDATED=0
APT_LOG=${TMPDIR:-/tmp}/coopride-apt.log

pkg_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

# apt_install PKG...: installs the given packages; `apt-get update` runs at most
# once per setup run. Waits up to 10 min for a concurrent apt/dpkg to finish.
apt_install() {
    [[ $# -gt 0 ]] || return 0
    have apt-get || die "missing packages ($*) and apt-get is not available; install them by hand"
    local apt_opts=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        local try
        for try in 1 2 3; do
            # `update` takes the lists lock, which DPkg::Lock::Timeout may not
            # cover: retry a few times in case another apt run holds it.
            if as_root apt-get "${apt_opts[@]}" -qq update; then
                break
            fi
            [[ $try -lt 3 ]] || die "apt-get update failed"
            log "apt-get update failed (another apt running?); retrying in 15 s"
            sleep 15
        done
        APT_UPDATED=1
    fi
    log "apt-get install $* (log: $APT_LOG)"
    if ! as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get "${apt_opts[@]}" -y -q --no-install-recommends install "$@" >>"$APT_LOG" 2>&1; then
        tail -n 30 "$APT_LOG" >&2 || true
        die "apt-get install $* failed (full log: $APT_LOG)"
    fi
}

# ---------------------------------------------------------------- PostgreSQL

pg_answers() {
    if have pg_isready; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 3
    elif [[ $PG_HOST != /* ]]; then
        # shellcheck disable=SC2016 # expanded by the inner bash
        timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$PG_HOST" "$PG_PORT" 2>/dev/null
    else
        [[ -S $PG_HOST/.s.PGSQL.$PG_PORT ]]
    fi
}

pg_server_installed() {
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

# Newest PostgreSQL major whose server binaries are installed.
pg_newest_installed_major() {
    local d
    d=$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sed -E 's#^/usr/lib/postgresql/([^/]+)/.*#\1#' | sort -V | tail -n1)
    [[ -n $d ]] && printf '%s' "$d"
}

# "version name status" of the local cluster configured for PG_PORT, if any.
pg_cluster_for_port() {
    have pg_lsclusters || return 1
    pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1, $2, $4; found=1; exit } END { exit !found }'
}

# psql over the local socket as the postgres OS user (superuser).
pg_admin_psql() {
    local host_opt=()
    [[ $PG_HOST == /* ]] && host_opt=(-h "$PG_HOST")
    as_postgres psql -X -q -v ON_ERROR_STOP=1 "${host_opt[@]}" -p "$PG_PORT" "$@"
}

# Major version of the server at PG_HOST:PG_PORT (asks the running server when
# possible, falls back to the local cluster list / /etc/postgresql).
pg_server_major() {
    local num="" c
    if have psql; then
        num=$(psql -X -tA "$PG_URL" -c 'SHOW server_version_num' 2>/dev/null || true)
        if [[ -z $num ]] && is_local_host "$PG_HOST" && id postgres >/dev/null 2>&1; then
            num=$(pg_admin_psql -tA -d postgres -c 'SHOW server_version_num' 2>/dev/null || true)
        fi
    fi
    if [[ $num =~ ^[0-9]+$ ]]; then
        printf '%s' $((num / 10000))
        return 0
    fi
    if c=$(pg_cluster_for_port); then
        printf '%s' "${c%% *}"
        return 0
    fi
    if [[ -d /etc/postgresql ]]; then
        c=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n1)
        if [[ -n $c ]]; then
            printf '%s' "$c"
            return 0
        fi
    fi
    return 1
}

pg_wait_ready() {
    local i
    for ((i = 0; i < PG_WAIT_SECONDS; i++)); do
        pg_answers && return 0
        sleep 1
    done
    return 1
}

# Packages the services need that are not there yet (PostGIS comes later,
# once the server's major version is known).
ensure_service_packages() {
    local pkgs=()
    if ! pg_answers && ! pg_server_installed; then
        is_local_host "$PG_HOST" ||
            die "no PostgreSQL answers at $PG_HOST:$PG_PORT (remote host: start it there or fix COOP_DATABASE_URL)"
        pkgs+=(postgresql)
    fi
    have psql && have pg_isready || pkgs+=(postgresql-client)
    if ! redis_answers; then
        if ! have redis-server; then
            is_local_host "$REDIS_HOST" ||
                die "no Redis answers at $REDIS_HOST:$REDIS_PORT (remote host: start it there or fix COOP_REDIS_URL)"
            pkgs+=(redis-server redis-tools)
        fi
    fi
    have redis-cli || [[ " ${pkgs[*]} " == *" redis-tools "* ]] || pkgs+=(redis-tools)
    if [[ ${#pkgs[@]} -gt 0 ]]; then
        apt_install "${pkgs[@]}"
    else
        log "service packages present"
    fi
}

ensure_postgres() {
    if pg_answers; then
        log "PostgreSQL answers at $PG_HOST:$PG_PORT"
        return 0
    fi
    is_local_host "$PG_HOST" ||
        die "no PostgreSQL answers at $PG_HOST:$PG_PORT (remote host: start it there or fix COOP_DATABASE_URL)"
    have pg_ctlcluster || die "pg_ctlcluster not found (postgresql-common missing?)"

    local cluster ver name status
    if cluster=$(pg_cluster_for_port); then
        read -r ver name status <<<"$cluster"
    else
        ver=$(pg_newest_installed_major) || die "no PostgreSQL server installed"
        name=main
        if [[ -d /etc/postgresql/$ver/$name ]]; then
            die "cluster $ver/$name exists but is not configured for port $PG_PORT; see pg_lsclusters, or point COOP_DATABASE_URL at its port"
        fi
        log "creating PostgreSQL cluster $ver/$name on port $PG_PORT"
        as_root pg_createcluster "$ver" "$name" --port "$PG_PORT" >/dev/null
        status=down
    fi
    if [[ $status == online* ]]; then
        log "cluster $ver/$name is online but $PG_HOST:$PG_PORT does not answer; waiting"
    else
        log "starting PostgreSQL cluster $ver/$name (port $PG_PORT)"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start ||
            die "pg_ctlcluster $ver $name start failed; see /var/log/postgresql/postgresql-$ver-$name.log"
    fi
    pg_wait_ready ||
        die "PostgreSQL did not answer at $PG_HOST:$PG_PORT within ${PG_WAIT_SECONDS}s (check listen_addresses/port in /etc/postgresql/$ver/$name/postgresql.conf and /var/log/postgresql/postgresql-$ver-$name.log)"
    log "PostgreSQL is up at $PG_HOST:$PG_PORT"
}

ensure_postgis_package() {
    if ! is_local_host "$PG_HOST"; then
        log "PostgreSQL is remote ($PG_HOST): PostGIS must be installed on that server"
        return 0
    fi
    local major pkg
    major=$(pg_server_major) || die "cannot tell the PostgreSQL major version (is a server installed?)"
    pkg=postgresql-$major-postgis-3
    if pkg_installed "$pkg"; then
        log "$pkg present"
    else
        apt_install "$pkg"
    fi
}

# ---------------------------------------------------------------- role / database

ensure_role_and_db() {
    local err
    if err=$(psql -X -tA "$PG_URL" -c 'select 1' 2>&1 >/dev/null); then
        log "database '$PG_DB' reachable as role '$PG_USER'"
        pg_warn_if_not_superuser
        return 0
    fi
    # Typically: role or database does not exist, or password auth failed.
    # Creating only what is missing is harmless, so no need to parse (possibly
    # localized) error messages.
    is_local_host "$PG_HOST" ||
        die "cannot connect as '$PG_USER' to remote $PG_HOST:$PG_PORT/$PG_DB: $err (create the role/database there)"
    id postgres >/dev/null 2>&1 || die "cannot connect as '$PG_USER': $err (and no local postgres OS user to fix it)"

    log "creating role '$PG_USER' / database '$PG_DB' if missing (as the postgres OS user)"
    # The role is SUPERUSER on purpose: it is a development role. `CREATE
    # EXTENSION postgis` needs superuser, and the test suite creates (and drops)
    # its own per-run test databases. Existing roles/databases are left as they
    # are; nothing is ever dropped here.
    pg_admin_psql -d postgres -v role="$PG_USER" -v pw="$PG_PASSWORD" -v db="$PG_DB" <<'SQL' ||
SELECT CASE WHEN :'pw' = ''
            THEN format('CREATE ROLE %I LOGIN SUPERUSER', :'role')
            ELSE format('CREATE ROLE %I LOGIN SUPERUSER PASSWORD %L', :'role', :'pw')
       END
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role')
\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')
\gexec
SQL
        die "creating role/database as the postgres OS user failed"

    if ! err=$(psql -X -tA "$PG_URL" -c 'select 1' 2>&1 >/dev/null); then
        die "still cannot connect as '$PG_USER' to '$PG_DB': $err
  If the role already existed with another password, set it yourself, e.g.
    runuser -u postgres -- psql -c \"ALTER ROLE \\\"$PG_USER\\\" PASSWORD '...'\"
  and check that pg_hba.conf allows password (scram-sha-256/md5) or trust auth for $PG_HOST."
    fi
    log "database '$PG_DB' reachable as role '$PG_USER'"
    pg_warn_if_not_superuser
}

pg_warn_if_not_superuser() {
    local su
    su=$(psql -X -tA "$PG_URL" -c 'select rolsuper from pg_roles where rolname = current_user' 2>/dev/null || true)
    if [[ $su != t ]]; then
        log "WARNING: role '$PG_USER' is not SUPERUSER; CREATE EXTENSION postgis and the test databases may fail"
    fi
}

# ---------------------------------------------------------------- Redis

redis_answers() {
    local reply
    if have redis-cli; then
        # Explicit options rather than `-u URL`: redis-cli 7.0 does not
        # percent-decode the password in a URL.
        local opts=(-h "$REDIS_HOST" -p "$REDIS_PORT" -n "$REDIS_DB")
        [[ -z $REDIS_USER ]] || opts+=(--user "$REDIS_USER")
        reply=$(REDISCLI_AUTH=$REDIS_PASSWORD timeout 5 redis-cli "${opts[@]}" ping 2>/dev/null || true)
        [[ $reply == PONG ]]
    else
        # No redis-cli yet: speak the inline protocol over bash's /dev/tcp.
        # shellcheck disable=SC2016 # expanded by the inner bash
        reply=$(timeout 3 bash -c '
            exec 3<>"/dev/tcp/$1/$2" || exit 1
            [[ -n $3 ]] && printf "AUTH %s\r\n" "$3" >&3 && read -r _ <&3
            printf "PING\r\n" >&3
            read -r line <&3 && printf "%s" "$line"' _ "$REDIS_HOST" "$REDIS_PORT" "$REDIS_PASSWORD" 2>/dev/null || true)
        [[ ${reply%$'\r'} == +PONG ]]
    fi
}

ensure_redis() {
    if redis_answers; then
        log "Redis answers at $REDIS_HOST:$REDIS_PORT"
        return 0
    fi
    is_local_host "$REDIS_HOST" ||
        die "no Redis answers at $REDIS_HOST:$REDIS_PORT (remote host: start it there or fix COOP_REDIS_URL)"
    have redis-server || die "redis-server is not installed"

    log "starting redis-server on port $REDIS_PORT (log: $REDIS_LOGFILE)"
    local args=(--daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT"
        --save "" --appendonly no --dir /tmp --logfile "$REDIS_LOGFILE")
    if [[ -n $REDIS_PASSWORD ]]; then
        args+=(--requirepass "$REDIS_PASSWORD")
    fi
    redis-server "${args[@]}" || die "redis-server failed to start; see $REDIS_LOGFILE"

    local i
    for ((i = 0; i < REDIS_WAIT_SECONDS * 2; i++)); do
        if redis_answers; then
            log "Redis is up at $REDIS_HOST:$REDIS_PORT"
            return 0
        fi
        sleep 0.5
    done
    tail -n 20 "$REDIS_LOGFILE" >&2 2>/dev/null || true
    die "Redis did not answer PONG at $REDIS_HOST:$REDIS_PORT within ${REDIS_WAIT_SECONDS}s"
}
