# s3rver (npm): an S3-compatible store for the local compose stack. Not for production.
ARG NODE_IMAGE=node:22-bookworm-slim
FROM ${NODE_IMAGE}
ARG EXTRA_CA_CERTS=""
RUN if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" > /tmp/extra-ca.pem; export NODE_EXTRA_CA_CERTS=/tmp/extra-ca.pem; fi \
 && npm install --global --no-audit --no-fund s3rver@3.7 && npm cache clean --force && rm -f /tmp/extra-ca.pem \
 && mkdir /data && chown node:node /data
USER node
VOLUME /data
EXPOSE 4568
# --no-vhost-buckets: otherwise s3rver takes the host name "s3" for a bucket name.
CMD ["s3rver", "--directory", "/data", "--address", "0.0.0.0", "--port", "4568", "--no-vhost-buckets"]
