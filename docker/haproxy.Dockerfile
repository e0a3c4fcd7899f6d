# HAProxy for the local compose stack, from Debian's package (2.6).
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends haproxy && rm -rf /var/lib/apt/lists/*
COPY haproxy.cfg /etc/haproxy/haproxy.cfg
USER haproxy
EXPOSE 8080
CMD ["haproxy", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
