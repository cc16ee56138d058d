#!/usr/bin/env bash
# The dev overlay's credentials, generated once per clone: random passwords for MinIO (the
# dev S3 server), the storefront's PostgreSQL and its JWT secret, written as the env files
# kustomize's secretGenerator reads (deploy/overlays/dev/secrets/, git-ignored, mode 600).
# An existing file is never rewritten: the PostgreSQL and MinIO volumes keep the password
# they were initialised with. To rotate, delete the folder and the volumes together.
#   scripts/dev-secrets.sh [FOLDER]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/deploy/overlays/dev/secrets}
umask 077
mkdir -p "$out"

random() { # bytes -> that many random bytes as hex
    od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}
write() { # file, then its KEY=VALUE lines; atomically, only if absent
    local file=$out/$1
    shift
    [ -e "$file" ] && return 0
    printf '%s\n' "$@" > "$file.tmp"
    mv "$file.tmp" "$file"
    printf 'dev-secrets: wrote %s\n' "$file"
}

if [ ! -e "$out/minio.env" ] || [ ! -e "$out/s3.env" ]; then
    # The two share one pair: MinIO's root user is what the components sign with.
    rm -f "$out/minio.env" "$out/s3.env"
    user=prescale-$(random 4)
    password=$(random 24)
    write minio.env "MINIO_ROOT_USER=$user" "MINIO_ROOT_PASSWORD=$password"
    write s3.env "AWS_ACCESS_KEY_ID=$user" "AWS_SECRET_ACCESS_KEY=$password"
fi
if [ ! -e "$out/postgres.env" ] || [ ! -e "$out/database.env" ]; then
    rm -f "$out/postgres.env" "$out/database.env"
    password=$(random 24)
    write postgres.env "password=$password"
    write database.env "url=postgres://storefront:$password@postgres.storefront.svc:5432/storefront"
fi
# At least 32 bytes: the services refuse shorter secrets.
write jwt.env "secret=$(random 32)"
