# Air-gapped stand-in for the official haproxy image: Debian's HAProxy on the debootstrapped base,
# its configuration where the official image keeps it.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN mkdir -p /usr/local/etc/haproxy /var/lib/haproxy && chown haproxy:haproxy /var/lib/haproxy
USER haproxy
EXPOSE 8080 8404
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
