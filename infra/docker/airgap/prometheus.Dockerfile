# Air-gapped stand-in for the official prom/prometheus image: Debian's Prometheus (2.42) on the debootstrapped
# base. The build context is the unpacked Debian package (`apt-get download prometheus`, `dpkg-deb -x`, done by
# infra/docker/airgap.py): its server binary and web assets only (no promtool: 48 MB the stack never runs).
# Same user, paths and defaults as the official image, so docker-compose.yml runs either unchanged.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY usr/bin/prometheus /usr/bin/prometheus
COPY usr/share/prometheus/web /usr/share/prometheus/web
RUN mkdir -p /etc/prometheus /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
