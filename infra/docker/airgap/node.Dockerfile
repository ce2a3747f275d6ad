# A Docker engine in a container, for `scalecube nodes` (infra/docker/nodes.py): Debian's docker.io (dockerd,
# containerd, runc) and iptables on the debootstrapped base. Built with the host's network: apt fetches the
# packages from the same Debian mirror the base came from (no image registry is involved). The node's
# /var/lib/docker is a volume (overlay2 cannot sit on the container's own overlay root) and /run a tmpfs.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN mkdir -p /var/lib/apt/lists/partial /var/cache/apt/archives/partial \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io iptables \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /usr/share/doc /usr/share/man
# Bookworm's iptables defaults to the nft backend; dockerd inside a container works with either, the legacy one
# needs no nftables support from the host's kernel.
RUN update-alternatives --set iptables /usr/sbin/iptables-legacy && update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy
VOLUME /var/lib/docker
EXPOSE 2375 2377 7946 4789/udp
# The engine listens on its socket (for `docker exec NODE docker ...`) and on TCP 2375 without TLS: reachable only
# on the nodes' own bridge network (never published), from the host and the other nodes.
# --tls=false says so on purpose: without it dockerd waits 15 s at start to warn about the unauthenticated port.
ENTRYPOINT ["dockerd", "--host", "unix:///var/run/docker.sock", "--host", "tcp://0.0.0.0:2375", "--tls=false", "--storage-driver", "overlay2"]
