# syntax=docker/dockerfile:1
# Harness: harnessd, harness-gateway and harnessctl on Debian 12.
#
#   docker build -t harness:0.1.0 .
#   docker run --rm -p 50051:50051 -v harness-data:/var/lib/harness harness:0.1.0
#   docker run --rm -p 8080:8080 --entrypoint harness-gateway harness:0.1.0 \
#       --listen 0.0.0.0:8080 --grpc-target <harnessd-host>:50051
#
# bwrap sandboxes run as their own unprivileged account (harness-sandbox,
# 10002:10002, created below), so harnessd must be able to switch to it:
#   docker run --rm -p 50051:50051 -v harness-data:/var/lib/harness \
#       --user 0 --cap-drop ALL --cap-add SETUID --cap-add SETGID \
#       --cap-add SYS_ADMIN --cap-add CHOWN --cap-add FOWNER \
#       --cap-add DAC_OVERRIDE --cap-add KILL --security-opt no-new-privileges \
#       --security-opt apparmor=unconfined harness:0.1.0
# As the default user (10001) harnessd serves everything but sandboxes
# (SandboxService says why) unless --sandbox-allow-same-uid 1 (development).
#
# The Helm chart (helm/harness) runs both binaries from this image in one pod.

############################ build ############################
FROM debian:12 AS build

# The same package list as a developer machine: scripts/deps.sh (idempotent,
# runs apt-get as root).
COPY scripts/deps.sh /tmp/deps.sh
RUN bash /tmp/deps.sh && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DHS_WERROR=OFF \
 && cmake --build build --parallel "$(nproc)" \
      --target harnessd harness-sandbox-init harness-gateway harnessctl \
 && install -D -m 0755 -t /out/usr/local/bin \
      build/server/harnessd build/server/harness-sandbox-init \
      build/gateway/harness-gateway build/clients/harnessctl \
 && install -D -m 0755 scripts/sandbox-account.sh /out/usr/local/sbin/harness-sandbox-account

############################ runtime ############################
FROM debian:12-slim

# Runtime libraries only (the -dev packages' shared-library counterparts),
# bubblewrap for the bwrap sandbox driver (libseccomp for its filter), CA
# certificates for the upstream user service, webhooks and git remotes over
# HTTPS.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc29 libprotobuf-c1 libgit2-1.5 libcurl4 libcivetweb1 libsqlite3-0 \
      libjansson4 libsodium23 libssl3 libseccomp2 bubblewrap ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Non-root user 10001 (the chart's runAsUser) owns the data dir.
RUN groupadd --system --gid 10001 harness \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/harness \
      --no-create-home --shell /usr/sbin/nologin harness \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/harness

COPY --from=build /out/ /

# The account sandboxes run as (harnessd's --sandbox-uid default), made the
# way scripts/run.sh makes it; the chart's sandbox.uid/gid name it.
RUN harness-sandbox-account create harness-sandbox 10002

LABEL org.opencontainers.image.title="harness" \
      org.opencontainers.image.description="Harness control plane: harnessd (gRPC), harness-gateway (REST), harnessctl" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="debian:12-slim"

USER 10001:10001
WORKDIR /var/lib/harness
# gRPC (harnessd), HTTP (harness-gateway)
EXPOSE 50051 8080
# harnessd drains in-flight calls on SIGTERM (HARNESS_SHUTDOWN_GRACE_MS).
STOPSIGNAL SIGTERM
ENTRYPOINT ["harnessd"]
CMD ["--listen", "0.0.0.0:50051", "--data-dir", "/var/lib/harness"]
