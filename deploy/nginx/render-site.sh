#!/usr/bin/env bash
# Prints coopride's nginx site: deploy/nginx/coopride.conf.template with its
# placeholders filled from the environment (docs/deployment.md).
#
#   SERVER_NAME=rides.example.coop bash deploy/nginx/render-site.sh \
#       > /etc/nginx/sites-available/coopride
#
# Environment:
#   SERVER_NAME          required: the public host name the apps connect to
#   API_ADDRESSES        the api processes, HOST:PORT separated by spaces
#                        (default "127.0.0.1:8001 127.0.0.1:8002": coopride-api@8001 and @8002)
#   TLS_CERTIFICATE      default /etc/letsencrypt/live/$SERVER_NAME/fullchain.pem
#   TLS_CERTIFICATE_KEY  default /etc/letsencrypt/live/$SERVER_NAME/privkey.pem
#   HTTPS_LISTEN         nginx listen addresses for HTTPS, separated by spaces
#                        (default "443 [::]:443")
#   HTTP_LISTEN          the same for plain HTTP, which only redirects (default "80 [::]:80")
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEMPLATE=$HERE/coopride.conf.template

die() {
    printf 'render-site: %s\n' "$*" >&2
    exit 1
}

[[ -n ${SERVER_NAME:-} ]] || die "set SERVER_NAME to the public host name (the header of this script lists its settings)"
API_ADDRESSES=${API_ADDRESSES:-127.0.0.1:8001 127.0.0.1:8002}
TLS_CERTIFICATE=${TLS_CERTIFICATE:-/etc/letsencrypt/live/$SERVER_NAME/fullchain.pem}
TLS_CERTIFICATE_KEY=${TLS_CERTIFICATE_KEY:-/etc/letsencrypt/live/$SERVER_NAME/privkey.pem}
HTTPS_LISTEN=${HTTPS_LISTEN:-443 [::]:443}
HTTP_LISTEN=${HTTP_LISTEN:-80 [::]:80}

# A value is one nginx word: nothing that could end a directive or open a block.
for name in SERVER_NAME API_ADDRESSES TLS_CERTIFICATE TLS_CERTIFICATE_KEY HTTPS_LISTEN HTTP_LISTEN; do
    value=${!name}
    [[ $value != *[\;\{\}\"\'\$\\]* && $value != *$'\n'* ]] ||
        die "$name may not contain ; { } quotes \$ \\ or a newline: $value"
done
[[ $SERVER_NAME != *[[:space:]]* ]] || die "SERVER_NAME is one host name: $SERVER_NAME"

lines() { # lines PREFIX SUFFIX WORDS: one indented "PREFIX WORD SUFFIX;" line per word
    local prefix=$1 suffix=$2 word out=""
    for word in $3; do
        out+="    $prefix $word$suffix;"$'\n'
    done
    [[ -n $out ]] || die "no addresses for '$prefix'"
    printf '%s' "${out%$'\n'}"
}

API_SERVERS=$(lines server "" "$API_ADDRESSES")
HTTPS_LISTEN_LINES=$(lines listen " ssl" "$HTTPS_LISTEN")
HTTP_LISTEN_LINES=$(lines listen "" "$HTTP_LISTEN")

site=$(<"$TEMPLATE")
# Quoted replacements: taken literally (no & or \ expansion).
site=${site//'${SERVER_NAME}'/"$SERVER_NAME"}
site=${site//'${API_SERVERS}'/"$API_SERVERS"}
site=${site//'${TLS_CERTIFICATE}'/"$TLS_CERTIFICATE"}
site=${site//'${TLS_CERTIFICATE_KEY}'/"$TLS_CERTIFICATE_KEY"}
site=${site//'${HTTPS_LISTEN}'/"$HTTPS_LISTEN_LINES"}
site=${site//'${HTTP_LISTEN}'/"$HTTP_LISTEN_LINES"}
[[ $site != *'${'[A-Z]* ]] || die "a placeholder of $TEMPLATE is not filled"
printf '# Rendered by deploy/nginx/render-site.sh (SERVER_NAME=%s).\n%s\n' "$SERVER_NAME" "$site"
