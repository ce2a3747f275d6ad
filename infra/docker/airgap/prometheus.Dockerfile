# Air-gapped stand-in for the official prom/prometheus image: Debian's Prometheus (2.42) on the debootstrapped
# base. The build context is the unpacked Debian packages (`apt-get download`, `dpkg-deb -x`, done by
# infra/docker/airgap.py): the server and its web UI with the scripts and fonts it links to (no promtool:
# 48 MB the stack never runs, no docs).
# Same user, paths and defaults as the official image, so docker-compose.yml runs either unchanged.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY usr /usr
RUN mkdir -p /etc/prometheus /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
